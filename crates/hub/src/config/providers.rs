//! `[[providers]]`: each provider's spoke source (static list or DNS), health checks and TLS.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use super::HubConfig;
use crate::model::{DnsSource, Health, OutlierDetection, Provider, SpokeSource, SpokeTls};

/// One provider's already-parsed durations.
pub(super) struct Parts {
    pub health: Health,
    pub connect_timeout: Duration,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    pub outlier: OutlierDetection,
}

/// Validates every provider; `parts` are its already-parsed durations (health, connect timeout,
/// DNS TTL bounds, outlier detection). Returns the providers and their names.
pub(super) fn providers(
    cfg: &HubConfig,
    provider_parts: Vec<Parts>,
    errs: &mut Vec<String>,
) -> (Vec<Provider>, HashSet<String>) {
    let mut providers = Vec::new();
    let mut provider_names = HashSet::new();
    for (i, (p, parts)) in cfg.providers.iter().zip(provider_parts).enumerate() {
        let base = format!("providers[{i}]");
        let Parts {
            health,
            connect_timeout,
            min_ttl,
            max_ttl,
            outlier,
        } = parts;
        if p.name.is_empty() {
            errs.push(format!("{base}.name: must not be empty"));
        }
        if !provider_names.insert(p.name.clone()) {
            errs.push(format!("{base}.name: duplicate provider {:?}", p.name));
        }
        if health.interval < Duration::from_secs(1) {
            errs.push(format!("{base}.health.interval: must be at least 1s"));
        }
        if health.timeout.is_zero() {
            errs.push(format!("{base}.health.timeout: must be greater than 0"));
        }
        if health.healthy_threshold == 0 {
            errs.push(format!(
                "{base}.health.healthy_threshold: must be at least 1"
            ));
        }
        if health.unhealthy_threshold == 0 {
            errs.push(format!(
                "{base}.health.unhealthy_threshold: must be at least 1"
            ));
        }
        if connect_timeout.is_zero() {
            errs.push(format!("{base}.connect_timeout: must be greater than 0"));
        }
        if !(1..=64).contains(&p.connections) {
            errs.push(format!("{base}.connections: must be between 1 and 64"));
        }
        if outlier.consecutive_5xx > 0 {
            if outlier.base_ejection_time < Duration::from_secs(1) {
                errs.push(format!(
                    "{base}.outlier_detection.base_ejection_time: must be at least 1s"
                ));
            }
            if outlier.max_ejection_time < outlier.base_ejection_time {
                errs.push(format!(
                    "{base}.outlier_detection.max_ejection_time: less than base_ejection_time"
                ));
            }
        }
        let source = match (&p.dns, p.spokes.is_empty()) {
            (Some(_), false) => {
                errs.push(format!("{base}: set either `spokes` or `dns`, not both"));
                None
            }
            (None, true) => {
                errs.push(format!(
                    "{base}: needs `spokes = [...]` or `dns = \"name\"`"
                ));
                None
            }
            (None, false) => {
                let mut list = Vec::new();
                for (j, s) in p.spokes.iter().enumerate() {
                    match s.addr.parse::<SocketAddr>() {
                        Ok(a) => list.push((a, s.weight)),
                        Err(_) => errs.push(format!(
                            "{base}.spokes[{j}].addr: {:?} is not an ip:port address",
                            s.addr
                        )),
                    }
                }
                Some(SpokeSource::Static(list))
            }
            (Some(name), true) => {
                let (srv, weighted) = match p.dns_record.as_str() {
                    "a" => (false, false),
                    "srv" => (true, false),
                    "weighted" => (false, true),
                    other => {
                        errs.push(format!(
                            "{base}.dns_record: {other:?} is not \"a\", \"srv\" or \"weighted\""
                        ));
                        (false, false)
                    }
                };
                let server = match &p.dns_server {
                    None => None,
                    Some(s) => match s.parse::<SocketAddr>() {
                        Ok(a) => Some(a),
                        Err(_) => {
                            errs.push(format!(
                                "{base}.dns_server: {s:?} is not an ip:port address"
                            ));
                            None
                        }
                    },
                };
                if name.is_empty() {
                    errs.push(format!("{base}.dns: must not be empty"));
                }
                if min_ttl > max_ttl {
                    errs.push(format!("{base}.dns_min_ttl: greater than dns_max_ttl"));
                }
                if min_ttl < Duration::from_millis(100) {
                    errs.push(format!("{base}.dns_min_ttl: must be at least 100ms"));
                }
                Some(SpokeSource::Dns(DnsSource {
                    name: name.clone(),
                    srv,
                    weighted,
                    port: p.dns_port,
                    server,
                    min_ttl,
                    max_ttl,
                }))
            }
        };
        let tls = p.tls.as_ref().and_then(|t| {
            let interval = match &t.reload_interval {
                None => switchyard_tls::DEFAULT_RELOAD_INTERVAL,
                Some(v) => match humantime::parse_duration(v) {
                    Ok(d) if d >= Duration::from_millis(100) => d,
                    Ok(_) => {
                        errs.push(format!(
                            "{base}.tls.reload_interval: must be at least 100ms"
                        ));
                        return None;
                    }
                    Err(e) => {
                        errs.push(format!(
                            "{base}.tls.reload_interval: invalid duration {v:?}: {e}"
                        ));
                        return None;
                    }
                },
            };
            let files = switchyard_tls::ClientFiles {
                ca: t.ca.clone(),
                cert: t.cert.clone(),
                key: t.key.clone(),
            };
            // Load once now, so a bad file is reported with every other problem.
            if let Err(e) = switchyard_tls::client_config(&files) {
                errs.push(format!("{base}.tls: {e}"));
                return None;
            }
            if let Some(name) = &t.server_name
                && rustls::pki_types::ServerName::try_from(name.as_str()).is_err()
            {
                errs.push(format!(
                    "{base}.tls.server_name: {name:?} is not a DNS name or IP address"
                ));
                return None;
            }
            let server_name = t.server_name.clone().or_else(|| match &source {
                Some(SpokeSource::Dns(d)) => Some(d.name.trim_end_matches('.').to_string()),
                _ => None,
            });
            Some(SpokeTls {
                files,
                server_name,
                reload_interval: interval,
            })
        });
        if let Some(source) = source {
            providers.push(Provider {
                name: p.name.clone(),
                source,
                health,
                connect_timeout,
                connections: p.connections.clamp(1, 64) as usize,
                tls,
                outlier_detection: outlier,
            });
        }
    }

    (providers, provider_names)
}
