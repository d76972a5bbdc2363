//! Passive outlier detection of one spoke (Envoy's consecutive-5xx detector): counts the calls
//! that fail in a row and ejects the spoke for a while after `consecutive_5xx` of them. The
//! selector then treats it like a spoke at quota (headroom 0): it takes a request only when no
//! other spoke of its pool can.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::AttemptFailure;
use crate::model::OutlierDetection;

/// One spoke's outlier-detection state, lock-free: every call records its outcome and every
/// request's selection reads it.
#[derive(Debug, Default)]
pub struct Outlier {
    /// Calls that failed with a 5xx-class failure in a row.
    consecutive_5xx: AtomicU32,
    /// Ejections in a row (the ejection time's multiplier).
    ejections: AtomicU32,
    /// End of the current (or last) ejection, as `ms(instant)`; 0 = never ejected.
    until_ms: AtomicU64,
}

/// `t` as milliseconds since the first call (an atomic can hold it), at least 1.
fn ms(t: Instant) -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    u64::try_from(t.saturating_duration_since(base).as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

impl Outlier {
    /// The outcome of one call, `None` for a success. UNAVAILABLE and `attempt_timeout` count
    /// as 5xx; any other answer from the spoke (a success, RESOURCE_EXHAUSTED, NOT_FOUND, a
    /// rejection) ends the streak; a connection failure (ejected at once elsewhere) and the
    /// request's own deadline count for neither. The `consecutive_5xx`-th failure in a row
    /// ejects the spoke for `base_ejection_time` × ejections in a row (at most
    /// `max_ejection_time`); the first success after an ejection ended resets the multiplier.
    pub fn record(
        &self,
        failure: Option<&AttemptFailure>,
        cfg: &OutlierDetection,
        addr: &SocketAddr,
        provider: &str,
    ) {
        let is_5xx = match failure {
            Some(AttemptFailure::Unavailable | AttemptFailure::AttemptTimeout) => true,
            None
            | Some(
                AttemptFailure::Exhausted { .. }
                | AttemptFailure::Denied { .. }
                | AttemptFailure::NotServed
                | AttemptFailure::Rejected,
            ) => false,
            Some(AttemptFailure::Transport | AttemptFailure::Timeout) => return,
        };
        if cfg.consecutive_5xx == 0 {
            return;
        }
        if !is_5xx {
            if self.consecutive_5xx.load(Ordering::Relaxed) != 0 {
                self.consecutive_5xx.store(0, Ordering::Relaxed);
            }
            if failure.is_none()
                && self.ejections.load(Ordering::Relaxed) != 0
                && self.until_ms.load(Ordering::Relaxed) <= ms(Instant::now())
            {
                self.ejections.store(0, Ordering::Relaxed);
            }
            return;
        }
        let streak = self.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < cfg.consecutive_5xx {
            return;
        }
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        let now = Instant::now();
        let until = self.until_ms.load(Ordering::Relaxed);
        if until > ms(now) {
            return;
        }
        let count = self.ejections.load(Ordering::Relaxed).saturating_add(1);
        let time = cfg
            .base_ejection_time
            .saturating_mul(count)
            .min(cfg.max_ejection_time.max(cfg.base_ejection_time));
        // Concurrent calls may cross the threshold together: one of them ejects.
        if self
            .until_ms
            .compare_exchange(until, ms(now + time), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.ejections.store(count, Ordering::Relaxed);
        tracing::warn!(
            spoke = %addr, provider, consecutive_5xx = streak,
            ejection_ms = time.as_millis() as u64, ejections = count,
            "spoke ejected (outlier detection)"
        );
    }

    /// Time left of the current ejection, if the spoke is ejected at `now`.
    pub fn ejected_for(&self, now: Instant) -> Option<Duration> {
        let until = self.until_ms.load(Ordering::Relaxed);
        let now = ms(now);
        (until > now).then(|| Duration::from_millis(until - now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(n: u32) -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: n,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(60),
        }
    }

    #[test]
    fn ejects_after_n_in_a_row_and_a_success_breaks_the_streak() {
        let o = Outlier::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let c = cfg(3);
        let now = Instant::now();
        o.record(Some(&AttemptFailure::Unavailable), &c, &addr, "p");
        o.record(Some(&AttemptFailure::Unavailable), &c, &addr, "p");
        o.record(None, &c, &addr, "p");
        o.record(Some(&AttemptFailure::Unavailable), &c, &addr, "p");
        o.record(Some(&AttemptFailure::AttemptTimeout), &c, &addr, "p");
        // Transport failures and deadlines neither count nor break the streak.
        o.record(Some(&AttemptFailure::Transport), &c, &addr, "p");
        assert_eq!(o.ejected_for(now), None);
        o.record(Some(&AttemptFailure::Unavailable), &c, &addr, "p");
        let left = o.ejected_for(Instant::now()).unwrap();
        assert!(left > Duration::from_secs(29) && left <= Duration::from_secs(30));
        // Over by then.
        assert_eq!(
            o.ejected_for(Instant::now() + Duration::from_secs(31)),
            None
        );
    }

    #[test]
    fn repeated_ejections_grow_up_to_the_maximum_and_off_means_off() {
        let o = Outlier::default();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let c = cfg(1);
        o.record(Some(&AttemptFailure::Unavailable), &c, &addr, "p");
        // Ended early (as if the time had passed), then ejected again: twice the base.
        o.until_ms.store(ms(Instant::now()), Ordering::Relaxed);
        o.record(Some(&AttemptFailure::Unavailable), &c, &addr, "p");
        let left = o.ejected_for(Instant::now()).unwrap();
        assert!(left > Duration::from_secs(59), "{left:?}");
        o.until_ms.store(ms(Instant::now()), Ordering::Relaxed);
        o.record(Some(&AttemptFailure::Unavailable), &c, &addr, "p");
        let left = o.ejected_for(Instant::now()).unwrap();
        assert!(left <= Duration::from_secs(60), "capped: {left:?}");
        // A success after the ejection ended resets the multiplier.
        o.until_ms.store(ms(Instant::now()), Ordering::Relaxed);
        o.record(None, &c, &addr, "p");
        assert_eq!(o.ejections.load(Ordering::Relaxed), 0);

        let off = Outlier::default();
        for _ in 0..10 {
            off.record(Some(&AttemptFailure::Unavailable), &cfg(0), &addr, "p");
        }
        assert_eq!(off.ejected_for(Instant::now()), None);
    }
}
