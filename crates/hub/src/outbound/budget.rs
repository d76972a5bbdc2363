//! Retry budget: retries over a sliding window may not exceed
//! `min_per_second × window + ratio × requests`, so a failing fleet does not double its own load.

use std::collections::VecDeque;
use std::time::Instant;

use parking_lot::Mutex;

use crate::model::RetryBudget;

/// Pure sliding-window counter; time is passed in as whole seconds since an origin.
#[derive(Debug, Default)]
pub struct Window {
    /// (second, requests, retries), oldest first.
    buckets: VecDeque<(u64, u64, u64)>,
}

impl Window {
    fn trim(&mut self, now: u64, span: u64) {
        while self
            .buckets
            .front()
            .is_some_and(|(s, _, _)| s + span <= now)
        {
            self.buckets.pop_front();
        }
    }

    fn bucket(&mut self, now: u64) -> &mut (u64, u64, u64) {
        if self.buckets.back().is_none_or(|(s, _, _)| *s != now) {
            self.buckets.push_back((now, 0, 0));
        }
        let last = self.buckets.len() - 1;
        &mut self.buckets[last]
    }

    pub fn record_request(&mut self, now: u64, span: u64) {
        self.trim(now, span);
        self.bucket(now).1 += 1;
    }

    /// Takes one retry from the budget if there is one.
    pub fn try_retry(&mut self, now: u64, span: u64, cfg: &RetryBudget) -> bool {
        self.trim(now, span);
        let (reqs, retries) = self
            .buckets
            .iter()
            .fold((0u64, 0u64), |(a, b), (_, r, t)| (a + r, b + t));
        let allowed = f64::from(cfg.min_per_second) * span as f64 + cfg.ratio * reqs as f64;
        if (retries as f64) < allowed {
            self.bucket(now).2 += 1;
            true
        } else {
            false
        }
    }
}

/// The hub-wide budget.
#[derive(Debug)]
pub struct Budget {
    cfg: RetryBudget,
    origin: Instant,
    window: Mutex<Window>,
}

impl Budget {
    pub fn new(cfg: RetryBudget) -> Self {
        Self {
            cfg,
            origin: Instant::now(),
            window: Mutex::new(Window::default()),
        }
    }

    fn now_and_span(&self) -> (u64, u64) {
        (
            self.origin.elapsed().as_secs(),
            self.cfg.window.as_secs().max(1),
        )
    }

    /// Called once per client request.
    pub fn record_request(&self) {
        let (now, span) = self.now_and_span();
        self.window.lock().record_request(now, span);
    }

    /// Called before each attempt after the first.
    pub fn try_retry(&self) -> bool {
        let (now, span) = self.now_and_span();
        self.window.lock().try_retry(now, span, &self.cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn budget_is_floor_plus_ratio_and_slides() {
        let cfg = RetryBudget {
            ratio: 0.2,
            min_per_second: 1,
            window: Duration::from_secs(10),
        };
        let mut w = Window::default();
        for _ in 0..100 {
            w.record_request(0, 10);
        }
        // floor 10 + 20% of 100 = 30 retries
        let granted = (0..100).filter(|_| w.try_retry(0, 10, &cfg)).count();
        assert_eq!(granted, 30);
        // after the window has passed, everything is forgotten: only the floor remains
        let granted = (0..100).filter(|_| w.try_retry(20, 10, &cfg)).count();
        assert_eq!(granted, 10);
    }
}
