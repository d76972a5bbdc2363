//! The embedded store: exact for one replica, nothing to run. Same semantics as the Redis
//! store's Lua scripts.

use crate::calendar::{day_key, month_key, ms_to_next_day, ms_to_next_month, now_ms};
use crate::{
    Admission, Limit, Limits, QuotaStore, RateState, Reservation, StoreError, Window, micros,
};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

const MINUTE_MS: u64 = 60_000;

#[derive(Debug, Default)]
struct Scope {
    /// Admission times (ms) within the last minute.
    log: VecDeque<u64>,
    /// Token bucket: tokens available at `ts`.
    bucket: Option<(f64, u64)>,
    /// Spend in micro-dollars by window key (`d…`, `m…`).
    spend: HashMap<String, i64>,
}

impl Scope {
    fn prune(&mut self, now: u64) {
        while self.log.front().is_some_and(|t| *t + MINUTE_MS <= now) {
            self.log.pop_front();
        }
    }

    fn tokens(&self, limit: u64, now: u64) -> f64 {
        let (tokens, ts) = self.bucket.unwrap_or((limit as f64, now));
        let refill = now.saturating_sub(ts) as f64 * limit as f64 / MINUTE_MS as f64;
        (tokens + refill).min(limit as f64)
    }

    fn state(&mut self, limits: &Limits, now: u64) -> RateState {
        self.prune(now);
        RateState {
            requests: limits.requests_per_minute.map(|limit| {
                let used = self.log.len() as u64;
                Window {
                    limit,
                    remaining: limit.saturating_sub(used),
                    reset: Duration::from_millis(
                        self.log.back().map(|t| t + MINUTE_MS - now).unwrap_or(0),
                    ),
                }
            }),
            tokens: limits.tokens_per_minute.map(|limit| {
                let t = self.tokens(limit, now);
                let missing = limit as f64 - t.max(0.0);
                Window {
                    limit,
                    remaining: t.max(0.0).floor() as u64,
                    reset: Duration::from_millis(
                        (missing * MINUTE_MS as f64 / limit as f64).ceil() as u64,
                    ),
                }
            }),
        }
    }
}

#[derive(Debug, Default)]
pub struct MemoryStore {
    scopes: Mutex<HashMap<String, Scope>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// [`QuotaStore::admit`] at an explicit time (ms since epoch), for tests.
    pub fn admit_at(&self, scope: &str, limits: &Limits, tokens: u64, now: u64) -> Admission {
        let mut scopes = self.scopes.lock();
        let s = scopes.entry(scope.to_owned()).or_default();
        s.prune(now);
        let refuse = |s: &mut Scope, limit, retry_ms: u64| Admission::Refused {
            limit,
            retry_after: Duration::from_millis(retry_ms.max(1)),
            state: s.state(limits, now),
        };
        if let Some(b) = limits.usd_per_day
            && *s.spend.get(&day_key(now)).unwrap_or(&0) >= micros(b).max(1)
        {
            return refuse(s, Limit::DailyBudget, ms_to_next_day(now));
        }
        if let Some(b) = limits.usd_per_month
            && *s.spend.get(&month_key(now)).unwrap_or(&0) >= micros(b).max(1)
        {
            return refuse(s, Limit::MonthlyBudget, ms_to_next_month(now));
        }
        if let Some(rpm) = limits.requests_per_minute {
            let n = s.log.len() as u64;
            if n >= rpm {
                // The entry whose expiry brings the count below the limit.
                let idx = (n - rpm) as usize;
                let wait = s.log.get(idx).map(|t| t + MINUTE_MS - now).unwrap_or(1);
                return refuse(s, Limit::Requests, wait);
            }
        }
        let mut take = 0.0;
        if let Some(tpm) = limits.tokens_per_minute {
            let have = s.tokens(tpm, now);
            take = tokens.min(tpm) as f64;
            if have < take {
                let wait = ((take - have) * MINUTE_MS as f64 / tpm as f64).ceil() as u64;
                return refuse(s, Limit::Tokens, wait);
            }
            s.bucket = Some((have - take, now));
        }
        if limits.requests_per_minute.is_some() {
            s.log.push_back(now);
        }
        Admission::Admitted {
            reservation: Reservation {
                scope: scope.to_owned(),
                tokens: take as u64,
                local: true,
            },
            state: s.state(limits, now),
        }
    }

    /// [`QuotaStore::settle`] at an explicit time.
    pub fn settle_at(
        &self,
        r: &Reservation,
        limits: &Limits,
        used_tokens: u64,
        cost_usd: f64,
        now: u64,
    ) {
        let mut scopes = self.scopes.lock();
        let s = scopes.entry(r.scope.clone()).or_default();
        if let Some(tpm) = limits.tokens_per_minute {
            let delta = r.tokens as f64 - used_tokens as f64;
            if delta != 0.0 {
                let t = s.tokens(tpm, now);
                s.bucket = Some(((t + delta).min(tpm as f64), now));
            }
        }
        let c = micros(cost_usd);
        if c > 0 {
            *s.spend.entry(day_key(now)).or_default() += c;
            *s.spend.entry(month_key(now)).or_default() += c;
            let (d, m) = (day_key(now), month_key(now));
            s.spend.retain(|k, _| *k == d || *k == m);
        }
    }

    pub fn peek_at(&self, scope: &str, limits: &Limits, now: u64) -> RateState {
        let mut scopes = self.scopes.lock();
        match scopes.get_mut(scope) {
            Some(s) => s.state(limits, now),
            None => Scope::default().state(limits, now),
        }
    }
}

#[async_trait::async_trait]
impl QuotaStore for MemoryStore {
    async fn admit(
        &self,
        scope: &str,
        limits: &Limits,
        tokens: u64,
    ) -> Result<Admission, StoreError> {
        Ok(self.admit_at(scope, limits, tokens, now_ms()))
    }

    async fn settle(
        &self,
        r: &Reservation,
        limits: &Limits,
        used_tokens: u64,
        cost_usd: f64,
    ) -> Result<(), StoreError> {
        self.settle_at(r, limits, used_tokens, cost_usd, now_ms());
        Ok(())
    }

    async fn peek(&self, scope: &str, limits: &Limits) -> Result<RateState, StoreError> {
        Ok(self.peek_at(scope, limits, now_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_795_262_400_000;

    fn rpm(n: u64) -> Limits {
        Limits {
            requests_per_minute: Some(n),
            ..Default::default()
        }
    }

    fn admitted(a: &Admission) -> bool {
        matches!(a, Admission::Admitted { .. })
    }

    #[test]
    fn sliding_window_admits_exactly_the_limit_per_minute() {
        let s = MemoryStore::new();
        for i in 0..3 {
            assert!(admitted(&s.admit_at("t", &rpm(3), 0, T0 + i * 1000)));
        }
        let Admission::Refused {
            limit, retry_after, ..
        } = s.admit_at("t", &rpm(3), 0, T0 + 5000)
        else {
            panic!("fourth request admitted")
        };
        assert_eq!(limit, Limit::Requests);
        assert_eq!(retry_after, Duration::from_millis(55_000));
        assert!(admitted(&s.admit_at("t", &rpm(3), 0, T0 + 60_000)));
        // Scopes are independent.
        assert!(admitted(&s.admit_at("other", &rpm(3), 0, T0 + 5000)));
    }

    #[test]
    fn tokens_are_reserved_then_settled() {
        let s = MemoryStore::new();
        let l = Limits {
            tokens_per_minute: Some(1000),
            ..Default::default()
        };
        let Admission::Admitted { reservation, .. } = s.admit_at("t", &l, 600, T0) else {
            panic!()
        };
        // 600 reserved: a second 600 does not fit.
        assert!(!admitted(&s.admit_at("t", &l, 600, T0)));
        // The call used only 100: 500 come back.
        s.settle_at(&reservation, &l, 100, 0.0, T0);
        assert_eq!(s.peek_at("t", &l, T0).tokens.unwrap().remaining, 900);
        assert!(admitted(&s.admit_at("t", &l, 600, T0)));
    }

    #[test]
    fn budget_refuses_once_spend_reaches_it() {
        let s = MemoryStore::new();
        let l = Limits {
            usd_per_day: Some(0.01),
            ..Default::default()
        };
        let Admission::Admitted { reservation, .. } = s.admit_at("t", &l, 10, T0) else {
            panic!()
        };
        s.settle_at(&reservation, &l, 10, 0.006, T0);
        let Admission::Admitted { reservation, .. } = s.admit_at("t", &l, 10, T0) else {
            panic!()
        };
        s.settle_at(&reservation, &l, 10, 0.006, T0);
        let Admission::Refused {
            limit, retry_after, ..
        } = s.admit_at("t", &l, 10, T0)
        else {
            panic!("over budget admitted")
        };
        assert_eq!(limit, Limit::DailyBudget);
        assert_eq!(retry_after, Duration::from_millis(43_200_000));
        // A new UTC day starts afresh.
        assert!(admitted(&s.admit_at("t", &l, 10, T0 + 43_200_000)));
    }

    proptest! {
        /// However requests arrive, no 60 s window ever holds more admissions than the limit.
        #[test]
        fn no_minute_ever_exceeds_the_request_limit(
            limit in 1u64..20,
            gaps in proptest::collection::vec(0u64..5_000, 1..200),
        ) {
            let s = MemoryStore::new();
            let mut now = T0;
            let mut times = Vec::new();
            for g in gaps {
                now += g;
                if admitted(&s.admit_at("t", &rpm(limit), 0, now)) {
                    times.push(now);
                }
            }
            for (i, t) in times.iter().enumerate() {
                let in_window = times[i..].iter().take_while(|u| **u < t + 60_000).count() as u64;
                prop_assert!(in_window <= limit);
            }
        }

        /// Reserved tokens never exceed the bucket plus its refill.
        #[test]
        fn token_admissions_stay_within_the_bucket(
            limit in 100u64..10_000,
            reqs in proptest::collection::vec((0u64..3_000, 1u64..500), 1..100),
        ) {
            let s = MemoryStore::new();
            let l = Limits { tokens_per_minute: Some(limit), ..Default::default() };
            let mut now = T0;
            let mut taken = 0u64;
            for (gap, n) in reqs {
                now += gap;
                if let Admission::Admitted { reservation, .. } = s.admit_at("t", &l, n, now) {
                    taken += reservation.tokens;
                }
            }
            let bound = limit as f64 + (now - T0) as f64 * limit as f64 / 60_000.0;
            prop_assert!(taken as f64 <= bound + 1.0);
        }
    }
}
