//! Token buckets for account quotas (requests/min, tokens/min per region and model).
//!
//! Time is passed in (`Instant`) so the arithmetic is exact in tests. A bucket holds at most
//! `capacity` and refills continuously at `capacity` per `period`.

use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: f64,
    /// Tokens per second.
    rate: f64,
    available: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket of `capacity` that refills `capacity` per `period`.
    pub fn new(capacity: u64, period: Duration, now: Instant) -> Self {
        let capacity = capacity as f64;
        let secs = period.as_secs_f64().max(f64::MIN_POSITIVE);
        Self {
            capacity,
            rate: capacity / secs,
            available: capacity,
            updated: now,
        }
    }

    /// A requests- or tokens-per-minute bucket.
    pub fn per_minute(limit: u64, now: Instant) -> Self {
        Self::new(limit, Duration::from_secs(60), now)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.available = (self.available + elapsed * self.rate).min(self.capacity);
        self.updated = self.updated.max(now);
    }

    pub fn capacity(&self) -> u64 {
        self.capacity as u64
    }

    /// Whole units available now.
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.available.max(0.0).floor() as u64
    }

    /// Share of the capacity available now, 0.0 ..= 1.0.
    pub fn headroom(&mut self, now: Instant) -> f64 {
        self.refill(now);
        if self.capacity <= 0.0 {
            return 0.0;
        }
        (self.available / self.capacity).clamp(0.0, 1.0)
    }

    /// Whether `n` units could be taken now.
    pub fn can_take(&mut self, n: u64, now: Instant) -> bool {
        self.refill(now);
        // A request larger than the whole bucket may still go when the bucket is full,
        // otherwise it could never be served.
        let need = (n as f64).min(self.capacity);
        self.available >= need
    }

    /// Takes `n` units if available; returns whether it did.
    pub fn try_take(&mut self, n: u64, now: Instant) -> bool {
        if !self.can_take(n, now) {
            return false;
        }
        self.available -= (n as f64).min(self.capacity);
        true
    }

    /// Adjusts after the fact: `delta` > 0 returns units (over-estimate), < 0 takes more
    /// (under-estimate; may go negative, which delays the next admission).
    pub fn reconcile(&mut self, delta: i64, now: Instant) {
        self.refill(now);
        self.available = (self.available + delta as f64).min(self.capacity);
    }

    /// Time until `n` units will be available (zero if they are now).
    pub fn time_until(&mut self, n: u64, now: Instant) -> Duration {
        self.refill(now);
        let need = (n as f64).min(self.capacity) - self.available;
        if need <= 0.0 || self.rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(need / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn takes_until_empty_then_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_minute(60, t0);
        for _ in 0..60 {
            assert!(b.try_take(1, t0));
        }
        assert!(!b.try_take(1, t0));
        assert_eq!(b.time_until(1, t0), Duration::from_secs(1));
        assert!(b.try_take(1, t0 + Duration::from_secs(1)));
        assert_eq!(b.available(t0 + Duration::from_secs(600)), 60);
    }

    #[test]
    fn oversized_request_goes_only_on_a_full_bucket() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_minute(100, t0);
        assert!(b.try_take(500, t0));
        assert!(!b.can_take(500, t0 + Duration::from_secs(30)));
        assert!(b.can_take(500, t0 + Duration::from_secs(60)));
    }

    #[test]
    fn reconcile_returns_and_charges() {
        let t0 = Instant::now();
        let mut b = TokenBucket::per_minute(100, t0);
        assert!(b.try_take(80, t0));
        b.reconcile(50, t0);
        assert_eq!(b.available(t0), 70);
        b.reconcile(-90, t0);
        assert_eq!(b.available(t0), 0);
        assert!(!b.can_take(1, t0));
    }

    proptest! {
        /// Over any schedule, a bucket never admits more than capacity + rate × elapsed.
        #[test]
        fn never_admits_more_than_the_limit(
            limit in 1u64..1_000,
            steps in proptest::collection::vec((0u64..2_000, 1u64..20), 1..300),
        ) {
            let t0 = Instant::now();
            let mut b = TokenBucket::per_minute(limit, t0);
            let mut now = t0;
            let mut admitted = 0u64;
            for (advance_ms, n) in steps {
                now += Duration::from_millis(advance_ms);
                if b.try_take(n, now) {
                    admitted += n.min(limit);
                }
            }
            let elapsed = now.duration_since(t0).as_secs_f64();
            let bound = limit as f64 + elapsed * limit as f64 / 60.0;
            prop_assert!(admitted as f64 <= bound + 1e-6, "admitted {admitted} > bound {bound}");
        }

        #[test]
        fn headroom_is_a_fraction(limit in 1u64..10_000, take in 0u64..20_000) {
            let t0 = Instant::now();
            let mut b = TokenBucket::per_minute(limit, t0);
            b.try_take(take, t0);
            let h = b.headroom(t0);
            prop_assert!((0.0..=1.0).contains(&h));
        }
    }
}
