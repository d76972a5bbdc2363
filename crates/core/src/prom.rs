//! The process-wide Prometheus recorder behind the `metrics` facade (`counter!`, `histogram!`,
//! `gauge!`), rendered by `GET /metrics` on the hub and the spoke.

use std::sync::{Once, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Histogram buckets in seconds (durations, added latency, time to first token).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder on first use (idempotent) and returns its handle. When another
/// recorder is already installed (a test harness), a detached one is returned: `/metrics` then
/// renders nothing, but nothing fails.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = || {
            PrometheusBuilder::new()
                .set_buckets(SECONDS_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new())
        };
        match builder().install_recorder() {
            Ok(h) => h,
            Err(_) => builder().build_recorder().handle(),
        }
    })
}

/// Installs the recorder and keeps its histograms compact (upkeep every 5 s, for as long as the
/// runtime runs). Must run inside a Tokio runtime.
pub fn start() {
    let h = handle();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            h.run_upkeep();
        }
    });
}

/// The Prometheus text exposition of every metric recorded so far.
pub fn render() -> String {
    handle().render()
}

/// A metric family's type, for its description (see [`Family`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: its name, type and the text of its `# HELP` line (the meaning column of
/// the metric tables in `docs/observability.md`).
pub type Family = (&'static str, Kind, &'static str);

/// Registers each family's `# HELP` text with the recorder (installing it first). A family keeps
/// the first text it was given.
pub fn describe(families: &[Family]) {
    let _ = handle();
    for &(name, kind, help) in families {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
}

/// [`render`], with every family of `families` described first (once per process), so each
/// family in the exposition has its `# HELP` line. A tier passes its own table.
pub fn render_with_help(families: &[Family]) -> String {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| describe(families));
    render()
}

/// Metric handles kept per label set, so a request path that records the same few label sets
/// over and over does not register them again each time.
///
/// `counter!(name, &labels)` copies and hashes the labels and looks the series up in the
/// recorder's registry on every call; a handle from this cache is the same series, found by one
/// hash of the borrowed label values. `H` is whatever bundle of handles the caller records
/// together (built once per label set by the caller's closure). At most `max` label sets are
/// kept; past that, handles are built per call (the labels are bounded by configuration, so this
/// is a guard, not a working limit). Handles belong to the recorder installed when they were
/// built: build them after [`start`] (the hub and the spoke start it before serving).
pub struct HandleCache<const N: usize, H> {
    sets: std::sync::RwLock<
        std::collections::HashMap<u64, Bucket<N, H>, foldhash::fast::RandomState>,
    >,
    /// foldhash, randomly seeded: the values are configured names, and std's SipHash of them
    /// was most of a lookup.
    hasher: foldhash::fast::RandomState,
    max: usize,
}

/// The label sets (and their handles) whose values hash alike.
type Bucket<const N: usize, H> = Vec<([String; N], std::sync::Arc<H>)>;

impl<const N: usize, H> HandleCache<N, H> {
    /// An empty cache keeping at most `max` label sets.
    pub fn new(max: usize) -> Self {
        Self {
            sets: std::sync::RwLock::new(std::collections::HashMap::default()),
            hasher: foldhash::fast::RandomState::default(),
            max,
        }
    }

    /// The handles of the label set `values` (in the caller's fixed order of label names),
    /// built by `build` the first time.
    pub fn get(&self, values: [&str; N], build: impl FnOnce() -> H) -> std::sync::Arc<H> {
        use std::hash::BuildHasher as _;
        let hash = self.hasher.hash_one(values);
        let same = |k: &[String; N]| k.iter().zip(values).all(|(a, b)| a == b);
        if let Ok(sets) = self.sets.read()
            && let Some(h) = sets
                .get(&hash)
                .and_then(|v| v.iter().find(|(k, _)| same(k)))
        {
            return h.1.clone();
        }
        // Handles bind to the recorder installed when they are built.
        let _ = handle();
        let handles = std::sync::Arc::new(build());
        if let Ok(mut sets) = self.sets.write()
            && sets.len() < self.max
        {
            let bucket = sets.entry(hash).or_default();
            if !bucket.iter().any(|(k, _)| same(k)) {
                bucket.push((values.map(str::to_string), handles.clone()));
            }
        }
        handles
    }
}

/// A metric handle without labels, registered once on first use (after installing the
/// recorder): `static IN_FLIGHT: Unlabelled<Gauge> = Unlabelled::new(|| gauge!("name"));`.
pub struct Unlabelled<H> {
    cell: OnceLock<H>,
    build: fn() -> H,
}

impl<H> Unlabelled<H> {
    /// Registers with `build` on first use.
    pub const fn new(build: fn() -> H) -> Self {
        Self {
            cell: OnceLock::new(),
            build,
        }
    }
}

impl<H> std::ops::Deref for Unlabelled<H> {
    type Target = H;
    fn deref(&self) -> &H {
        self.cell.get_or_init(|| {
            let _ = handle();
            (self.build)()
        })
    }
}

#[cfg(test)]
mod cache_tests {
    use super::HandleCache;

    #[test]
    fn builds_once_per_label_set() {
        let cache: HandleCache<2, String> = HandleCache::new(10);
        let mut built = 0;
        for _ in 0..3 {
            let h = cache.get(["a", "b"], || {
                built += 1;
                "ab".to_string()
            });
            assert_eq!(*h, "ab");
        }
        let h = cache.get(["a", "c"], || {
            built += 1;
            "ac".to_string()
        });
        assert_eq!((h.as_str(), built), ("ac", 2));
    }

    #[test]
    fn past_the_bound_builds_per_call() {
        let cache: HandleCache<1, usize> = HandleCache::new(1);
        let mut built = 0;
        for v in ["x", "y", "y"] {
            cache.get([v], || {
                built += 1;
                built
            });
        }
        assert_eq!(built, 3, "x is kept, y is not");
    }
}
