//! Passive outlier detection of one spoke (Envoy's consecutive-5xx detector): counts the calls
//! that fail in a row and ejects the spoke for a while after `consecutive_5xx` of them. The
//! selector then treats it like a spoke at quota (headroom 0): it takes a request only when no
//! other spoke of its pool can.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::AttemptFailure;
use crate::model::OutlierDetection;

/// One spoke's outlier-detection state.
#[derive(Debug, Default)]
pub struct Outlier {
    /// Calls that failed with a 5xx-class failure in a row.
    consecutive_5xx: AtomicU32,
    ejection: Mutex<Ejection>,
}

#[derive(Debug, Default)]
struct Ejection {
    /// Ejected until then.
    until: Option<Instant>,
    /// Ejections in a row (the ejection time's multiplier).
    count: u32,
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
            // The common path takes no lock unless there is something to reset.
            if self.consecutive_5xx.load(Ordering::Relaxed) != 0 {
                self.consecutive_5xx.store(0, Ordering::Relaxed);
            }
            if failure.is_none() {
                let mut e = self.ejection.lock();
                if e.count > 0 && e.until.is_none_or(|t| t <= Instant::now()) {
                    *e = Ejection::default();
                }
            }
            return;
        }
        let streak = self.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < cfg.consecutive_5xx {
            return;
        }
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        let now = Instant::now();
        let mut e = self.ejection.lock();
        if e.until.is_some_and(|t| t > now) {
            return;
        }
        e.count = e.count.saturating_add(1);
        let time = cfg
            .base_ejection_time
            .saturating_mul(e.count)
            .min(cfg.max_ejection_time.max(cfg.base_ejection_time));
        e.until = Some(now + time);
        tracing::warn!(
            spoke = %addr, provider, consecutive_5xx = streak,
            ejection_ms = time.as_millis() as u64, ejections = e.count,
            "spoke ejected (outlier detection)"
        );
    }

    /// Time left of the current ejection, if the spoke is ejected at `now`.
    pub fn ejected_for(&self, now: Instant) -> Option<Duration> {
        self.ejection
            .lock()
            .until
            .and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero())
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
        o.ejection.lock().until = Some(Instant::now());
        o.record(Some(&AttemptFailure::Unavailable), &c, &addr, "p");
        let left = o.ejected_for(Instant::now()).unwrap();
        assert!(left > Duration::from_secs(59), "{left:?}");
        o.ejection.lock().until = Some(Instant::now());
        o.record(Some(&AttemptFailure::Unavailable), &c, &addr, "p");
        let left = o.ejected_for(Instant::now()).unwrap();
        assert!(left <= Duration::from_secs(60), "capped: {left:?}");
        // A success after the ejection ended resets the multiplier.
        o.ejection.lock().until = Some(Instant::now());
        o.record(None, &c, &addr, "p");
        assert_eq!(o.ejection.lock().count, 0);

        let off = Outlier::default();
        for _ in 0..10 {
            off.record(Some(&AttemptFailure::Unavailable), &cfg(0), &addr, "p");
        }
        assert_eq!(off.ejected_for(Instant::now()), None);
    }
}
