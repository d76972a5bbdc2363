//! Exponential backoff with full jitter ("Exponential Backoff And Jitter", AWS Architecture
//! Blog): the n-th consecutive throttle cools a route down for a uniformly random time in
//! `[0, min(max, base * 2^n))`, but never less than the upstream's own `Retry-After`.

use rand::Rng;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// Upper bound of the jitter window after `consecutive` throttles (1 = first throttle).
    pub fn ceiling(&self, consecutive: u32) -> Duration {
        let exp = consecutive.saturating_sub(1).min(30);
        let factor = 1u64 << exp;
        let ms = (self.base.as_millis() as u64).saturating_mul(factor);
        Duration::from_millis(ms).min(self.max)
    }

    /// The cool-down to apply: full jitter over the window, floored by `retry_after`.
    /// `unit` is a uniform sample in `[0, 1)`, passed in so the arithmetic is testable.
    pub fn cooldown_with(
        &self,
        consecutive: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Duration {
        let ceiling = self.ceiling(consecutive);
        let jittered = ceiling.mul_f64(unit.clamp(0.0, 1.0));
        match retry_after {
            // The upstream said when; honour it even past our own cap.
            Some(ra) => ra.max(jittered),
            None => jittered,
        }
    }

    /// [`Self::cooldown_with`] with a random sample.
    pub fn cooldown(&self, consecutive: u32, retry_after: Option<Duration>) -> Duration {
        let unit = rand::rng().random::<f64>();
        self.cooldown_with(consecutive, retry_after, unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(4), Duration::from_millis(800));
        assert_eq!(b.ceiling(5), Duration::from_secs(1));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_is_a_floor_even_above_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let ra = Some(Duration::from_secs(5));
        assert_eq!(b.cooldown_with(1, ra, 0.0), Duration::from_secs(5));
        assert_eq!(b.cooldown_with(9, ra, 0.99), Duration::from_secs(5));
    }

    proptest! {
        #[test]
        fn cooldown_stays_in_the_jitter_window(n in 1u32..64, unit in 0.0f64..1.0, base_ms in 1u64..5_000, max_ms in 1u64..120_000) {
            let b = Backoff { base: Duration::from_millis(base_ms), max: Duration::from_millis(max_ms) };
            let c = b.cooldown_with(n, None, unit);
            prop_assert!(c <= b.ceiling(n));
            prop_assert!(c <= b.max);
        }

        #[test]
        fn cooldown_never_below_retry_after(n in 1u32..64, unit in 0.0f64..1.0, ra_ms in 0u64..100_000) {
            let b = Backoff::default();
            let ra = Duration::from_millis(ra_ms);
            prop_assert!(b.cooldown_with(n, Some(ra), unit) >= ra);
        }
    }
}
