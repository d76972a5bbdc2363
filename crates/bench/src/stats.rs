//! Latency summaries: exact percentiles over every sample (a run holds at most a few tens of
//! thousands of samples, so sorting them is cheaper and simpler than a histogram).

use serde::Serialize;

/// p50/p90/p99/max of a set of durations, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Number of samples.
    pub n: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// Summarises samples given in microseconds (nearest-rank percentiles); all zero when empty.
    pub fn from_micros(mut samples: Vec<u64>) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let mean_ms = ms(samples.iter().sum::<u64>()) / samples.len() as f64;
        let at = |q: f64| -> f64 {
            // Nearest rank: the smallest sample with at least q of the samples at or below it.
            let rank = (q * samples.len() as f64).ceil() as usize;
            let idx = rank.clamp(1, samples.len()) - 1;
            ms(samples[idx])
        };
        Percentiles {
            n: samples.len(),
            mean_ms,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: samples.last().copied().map(ms).unwrap_or(0.0),
        }
    }

    /// `self − base`, percentile by percentile (the gateway's added latency when `self` went
    /// through it and `base` went directly). A difference of percentiles, not a percentile of
    /// differences: the two runs are different requests.
    pub fn minus(&self, base: &Percentiles) -> Added {
        Added {
            mean_ms: self.mean_ms - base.mean_ms,
            p50_ms: self.p50_ms - base.p50_ms,
            p90_ms: self.p90_ms - base.p90_ms,
            p99_ms: self.p99_ms - base.p99_ms,
            max_ms: self.max_ms - base.max_ms,
        }
    }
}

/// Added latency, percentile by percentile (see [`Percentiles::minus`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Added {
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let p = Percentiles::from_micros((1..=100).map(|i| i * 1000).collect());
        assert_eq!(p.n, 100);
        assert_eq!(p.mean_ms, 50.5);
        assert_eq!(p.p50_ms, 50.0);
        assert_eq!(p.p90_ms, 90.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
        let one = Percentiles::from_micros(vec![1500]);
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (1.5, 1.5, 1.5));
        assert_eq!(Percentiles::from_micros(vec![]), Percentiles::default());
        let d = p.minus(&Percentiles::from_micros(vec![1000; 10]));
        assert_eq!(d.p50_ms, 49.0);
    }
}
