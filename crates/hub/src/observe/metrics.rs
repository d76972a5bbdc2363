//! The hub's Prometheus exposition: the metrics recorded along the request path plus the pool
//! gauges, refreshed from the live table at scrape time.

use metrics::gauge;

use crate::live::Table;

/// The Prometheus exposition (text format 0.0.4) with the pool gauges (spoke health, breaker,
/// headroom, in flight) refreshed from `table` first.
pub fn render(table: &Table) -> String {
    for (name, pool) in &table.pools {
        for s in pool.spokes().iter() {
            let snap = s.snapshot();
            let d = snap.described.clone().unwrap_or_default();
            let account = super::label(&d.account);
            let spoke = snap.addr.to_string();
            let l = [
                ("pool", name.clone()),
                ("spoke", spoke.clone()),
                ("account", account.clone()),
            ];
            gauge!("switchyard_spoke_healthy", &l).set(if snap.healthy { 1.0 } else { 0.0 });
            let open = snap.ejected || snap.outlier_ejected_for.is_some();
            gauge!("switchyard_spoke_breaker_open", &l).set(if open { 1.0 } else { 0.0 });
            gauge!("switchyard_spoke_headroom", &l).set(d.headroom);
            gauge!("switchyard_spoke_in_flight", &l).set(f64::from(snap.in_flight));
            for r in &d.regions {
                gauge!(
                    "switchyard_reported_headroom",
                    "pool" => name.clone(),
                    "account" => account.clone(),
                    "region" => r.region.clone(),
                    "model" => r.model.clone()
                )
                .set(r.headroom);
            }
        }
    }
    switchyard_core::prom::render()
}
