//! Observed latency of successful spoke calls per (provider, model): an EWMA in milliseconds that
//! the `fastest` route preference orders candidates by.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;

use crate::model::Candidate;

/// EWMA (weight 0.2 for the newest call) of successful call latency per (provider, model).
#[derive(Debug, Default)]
pub struct Latency(Mutex<HashMap<(String, String), f64>>);

impl Latency {
    /// Folds one successful call of `c` that took `d` into its average.
    pub fn observe(&self, c: &Candidate, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        let mut lat = self.0.lock();
        let e = lat
            .entry((c.provider.clone(), c.model.clone()))
            .or_insert(ms);
        *e = 0.8 * *e + 0.2 * ms;
    }

    /// The average for `c`, when a call of it has succeeded.
    pub fn of(&self) -> impl Fn(&Candidate) -> Option<Duration> + use<> {
        let lat = self.0.lock().clone();
        move |c: &Candidate| {
            lat.get(&(c.provider.clone(), c.model.clone()))
                .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        }
    }
}
