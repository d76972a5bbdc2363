//! DNS discovery of a provider's spokes: A/AAAA (port from config) or SRV (ports and weights from
//! the records), re-resolved when the TTL expires, clamped to a floor and a ceiling; or a
//! *weighted* name (Route 53 weighted records: one record set per answer, drawn by weight), whose
//! members are learnt from many answers by [`WeightedMembers`].

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use tokio_util::sync::CancellationToken;

use crate::model::DnsSource;
use crate::outbound::pool::ProviderPool;

/// Errors building a resolver or resolving a pool name.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("resolver: {0}")]
    Resolver(String),
    #[error("lookup {name}: {message}")]
    Lookup { name: String, message: String },
}

/// Builds the resolver: the configured server (tests, private zones) or the system's.
pub fn resolver(src: &DnsSource) -> Result<TokioResolver, DnsError> {
    let builder = match src.server {
        Some(server) => {
            let mut ns = NameServerConfig::udp_and_tcp(server.ip());
            for c in &mut ns.connections {
                c.port = server.port();
            }
            Resolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => Resolver::builder_tokio().map_err(|e| DnsError::Resolver(e.to_string()))?,
    };
    builder
        .build()
        .map_err(|e| DnsError::Resolver(e.to_string()))
}

/// One resolution: the members (address, weight) and how long they are valid (the answer's
/// smallest TTL, clamped to `[dns_min_ttl, dns_max_ttl]`).
pub async fn resolve(
    resolver: &TokioResolver,
    src: &DnsSource,
) -> Result<(Vec<(SocketAddr, u32)>, Duration), DnsError> {
    let (members, ttl) = lookup(resolver, src).await?;
    Ok((members, clamp_ttl(src, ttl)))
}

/// The answer's smallest TTL (seconds, as received; `None` without records), clamped.
fn clamp_ttl(src: &DnsSource, ttl: Option<u32>) -> Duration {
    Duration::from_secs(u64::from(ttl.unwrap_or(0))).clamp(src.min_ttl, src.max_ttl)
}

/// One query: the members (address, weight) and the answer's smallest TTL in seconds as received
/// (`None` when it held no usable record).
async fn lookup(
    resolver: &TokioResolver,
    src: &DnsSource,
) -> Result<(Vec<(SocketAddr, u32)>, Option<u32>), DnsError> {
    let err = |e: &dyn std::fmt::Display| DnsError::Lookup {
        name: src.name.clone(),
        message: e.to_string(),
    };
    resolver.clear_cache();
    let mut members = Vec::new();
    let mut ttl = u32::MAX;
    if src.srv {
        let lookup = match resolver.srv_lookup(src.name.as_str()).await {
            Ok(l) => l,
            // An authoritative "no such records": the pool is empty (its spokes are drained).
            Err(e) if e.is_no_records_found() => return Ok((Vec::new(), None)),
            Err(e) => return Err(err(&e)),
        };
        for rec in lookup.answers() {
            let RData::SRV(srv) = &rec.data else { continue };
            ttl = ttl.min(rec.ttl);
            let ips = match resolver.lookup_ip(srv.target.clone()).await {
                Ok(ips) => ips,
                Err(e) if e.is_no_records_found() => continue,
                Err(e) => return Err(err(&e)),
            };
            for ip in ips.iter() {
                let addr = SocketAddr::new(ip, srv.port);
                if !members.iter().any(|(a, _)| *a == addr) {
                    // SRV weight 0 means "no preference"; keep such targets routable.
                    members.push((addr, u32::from(srv.weight.max(1))));
                }
            }
        }
    } else {
        let lookup = match resolver.lookup_ip(src.name.as_str()).await {
            Ok(l) => l,
            Err(e) if e.is_no_records_found() => return Ok((Vec::new(), None)),
            Err(e) => return Err(err(&e)),
        };
        for rec in lookup.as_lookup().answers() {
            let ip: Option<IpAddr> = match &rec.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            };
            if let Some(ip) = ip {
                ttl = ttl.min(rec.ttl);
                let addr = SocketAddr::new(ip, src.port);
                if !members.iter().any(|(a, _)| *a == addr) {
                    members.push((addr, 1));
                }
            }
        }
    }
    Ok((members, (ttl != u32::MAX).then_some(ttl)))
}

/// Keeps `pool` in line with DNS until `stop`. A failed lookup keeps the current members and
/// retries after the floor. A weighted name is handed to [`watch_weighted`].
pub async fn watch(pool: Arc<ProviderPool>, src: DnsSource, stop: CancellationToken) {
    let resolver = match resolver(&src) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(provider = %pool.name, error = %e, "DNS discovery disabled");
            return;
        }
    };
    if src.weighted {
        return watch_weighted(&pool, &resolver, &src, &stop).await;
    }
    loop {
        let wait = match resolve(&resolver, &src).await {
            Ok((members, ttl)) => {
                if members.is_empty() {
                    tracing::warn!(provider = %pool.name, name = %src.name, "DNS returned no spokes");
                }
                pool.set_members(&members);
                ttl
            }
            Err(e) => {
                tracing::warn!(provider = %pool.name, error = %e, "DNS lookup failed; keeping current spokes");
                src.min_ttl
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// `dns_record = "weighted"`: queries per (clamped) TTL.
pub const WEIGHTED_QUERIES_PER_TTL: u32 = 10;
/// Answers the weights are counted over: 40 TTLs' worth of queries.
pub const WEIGHTED_WINDOW: usize = 40 * WEIGHTED_QUERIES_PER_TTL as usize;
/// A member stays at least this many answers (3 TTLs' worth) after the last one that named it.
pub const WEIGHTED_MIN_ABSENT: u64 = 3 * WEIGHTED_QUERIES_PER_TTL as u64;
/// Accepted chance that a live member is dropped because chance alone kept it out of the answers
/// for [`WeightedMembers::absent_after`] answers in a row.
const WEIGHTED_FALSE_DROP: f64 = 1e-6;

/// Weighted discovery: queries [`WEIGHTED_QUERIES_PER_TTL`] times per TTL, learns the members
/// from the answers ([`WeightedMembers`]) and gives the pool the union, weighted by how often
/// each is answered. A failed lookup records nothing and keeps the members.
async fn watch_weighted(
    pool: &ProviderPool,
    resolver: &TokioResolver,
    src: &DnsSource,
    stop: &CancellationToken,
) {
    let mut learnt = WeightedMembers::default();
    let mut interval = src.min_ttl / WEIGHTED_QUERIES_PER_TTL;
    loop {
        match lookup(resolver, src).await {
            Ok((answer, ttl)) => {
                interval = clamp_ttl(src, ttl) / WEIGHTED_QUERIES_PER_TTL;
                let addrs: Vec<SocketAddr> = answer.iter().map(|(a, _)| *a).collect();
                if learnt.observe(&addrs, ttl.unwrap_or(0)) {
                    let members = learnt.members();
                    if members.is_empty() {
                        tracing::warn!(provider = %pool.name, name = %src.name, "DNS returned no spokes");
                    }
                    pool.set_members(&members);
                }
            }
            Err(e) => {
                tracing::warn!(provider = %pool.name, error = %e, "DNS lookup failed; keeping current spokes");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// What a weighted name has answered lately; pure state, no I/O.
///
/// Each answer is one *draw*: the record set the DNS server picked by weight (a set may hold
/// several addresses, e.g. a load balancer's IPs in each zone; they share the draw). A member's
/// weight is its share of the last [`WEIGHTED_WINDOW`] draws, in thousandths (1..=1000). A member
/// leaves when it has not been drawn for [`absent_after`](Self::absent_after) draws.
///
/// A caching resolver between the hub and the zone answers from its cache until the TTL runs
/// out, each time with a lower TTL: an answer with the same addresses and a lower TTL than the
/// previous one is such a repeat and is not counted as a draw.
#[derive(Debug, Default)]
pub struct WeightedMembers {
    /// The last draws, oldest first, each the addresses it named (sorted, distinct).
    window: VecDeque<Vec<SocketAddr>>,
    /// Per address: draws in the window that named it.
    seen: HashMap<SocketAddr, u32>,
    /// Per address: its share of the window (a draw of k addresses gives each 1/k).
    share: HashMap<SocketAddr, f64>,
    /// Per member: the number of the last draw that named it, and how many draws it may then
    /// miss before it leaves ([`absent_after`](Self::absent_after) at that draw).
    last: HashMap<SocketAddr, (u64, u64)>,
    /// Draws so far.
    draws: u64,
    /// Empty answers in a row (the name has no records: every member leaves after 3 TTLs).
    empty_streak: u64,
    /// The previous answer and its TTL, to spot a cache's repeats.
    prev: Option<(Vec<SocketAddr>, u32)>,
}

impl WeightedMembers {
    /// Records one answer (its addresses, its TTL in seconds as received). Returns whether it
    /// counted as a draw (false for a cache's repeat).
    pub fn observe(&mut self, answer: &[SocketAddr], ttl: u32) -> bool {
        let mut addrs = answer.to_vec();
        addrs.sort_unstable();
        addrs.dedup();
        let repeat = self
            .prev
            .as_ref()
            .is_some_and(|(prev, prev_ttl)| *prev == addrs && ttl < *prev_ttl);
        self.prev = Some((addrs.clone(), ttl));
        if repeat {
            return false;
        }
        self.draws += 1;
        let part = 1.0 / addrs.len().max(1) as f64;
        for a in &addrs {
            *self.seen.entry(*a).or_default() += 1;
            *self.share.entry(*a).or_default() += part;
        }
        self.empty_streak = if addrs.is_empty() {
            self.empty_streak + 1
        } else {
            0
        };
        self.window.push_back(addrs.clone());
        while self.window.len() > WEIGHTED_WINDOW {
            let Some(old) = self.window.pop_front() else {
                break;
            };
            let part = 1.0 / old.len().max(1) as f64;
            for a in old {
                if let Some(n) = self.seen.get_mut(&a) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.seen.remove(&a);
                        self.share.remove(&a);
                        continue;
                    }
                }
                if let Some(s) = self.share.get_mut(&a) {
                    *s = (*s - part).max(0.0);
                }
            }
        }
        for a in &addrs {
            self.last.insert(*a, (self.draws, self.absent_after(a)));
        }
        if self.empty_streak >= WEIGHTED_MIN_ABSENT {
            self.last.clear();
        }
        let draws = self.draws;
        self.last.retain(|_, (last, bound)| draws - *last < *bound);
        true
    }

    /// How many draws in a row may miss `addr` before it leaves: the number after which a member
    /// drawn with its observed frequency `p` would be missed by chance with probability below
    /// 10⁻⁶ (`ln 10⁻⁶ / ln(1 − p)`), at least [`WEIGHTED_MIN_ABSENT`] (3 TTLs) and at most
    /// [`WEIGHTED_WINDOW`] (40 TTLs). For p = 0.5 that is 30 draws, for 0.25 48, for 0.1 132.
    /// A member's bound is fixed at each draw that names it (the frequency then).
    pub fn absent_after(&self, addr: &SocketAddr) -> u64 {
        let n = self.window.len().max(1) as f64;
        let p = f64::from(self.seen.get(addr).copied().unwrap_or(0)) / n;
        let needed = if p <= 0.0 {
            WEIGHTED_WINDOW as f64
        } else if p >= 1.0 {
            0.0
        } else {
            (WEIGHTED_FALSE_DROP.ln() / (1.0 - p).ln()).ceil()
        };
        (needed as u64).clamp(WEIGHTED_MIN_ABSENT, WEIGHTED_WINDOW as u64)
    }

    /// The members (every address drawn and not yet absent; none once the name answered empty
    /// for 3 TTLs' worth of draws in a row) with their weights: share of the window's draws in
    /// thousandths, at least 1. Sorted by address.
    pub fn members(&self) -> Vec<(SocketAddr, u32)> {
        let n = self.window.len().max(1) as f64;
        let mut out: Vec<(SocketAddr, u32)> = self
            .last
            .keys()
            .map(|a| {
                let share = self.share.get(a).copied().unwrap_or(0.0) / n;
                (*a, ((share * 1000.0).round() as u32).max(1))
            })
            .collect();
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 50051))
    }

    /// One record set drawn by weight, as Route 53 does.
    fn draw<'a>(sets: &'a [(u32, Vec<SocketAddr>)], rng: &mut StdRng) -> &'a [SocketAddr] {
        let total: u32 = sets.iter().map(|(w, _)| w).sum();
        let mut r = rng.random_range(0..total);
        for (w, set) in sets {
            if r < *w {
                return set;
            }
            r -= w;
        }
        unreachable!()
    }

    fn weight_of(m: &WeightedMembers, a: SocketAddr) -> Option<u32> {
        m.members().iter().find(|(x, _)| *x == a).map(|(_, w)| *w)
    }

    #[test]
    fn converges_to_every_member_with_its_share() {
        let sets = vec![(1, vec![addr(1)]), (2, vec![addr(2)]), (1, vec![addr(3)])];
        let mut rng = StdRng::seed_from_u64(11);
        let mut m = WeightedMembers::default();
        for _ in 0..WEIGHTED_WINDOW {
            assert!(m.observe(draw(&sets, &mut rng), 10));
        }
        let members = m.members();
        assert_eq!(members.len(), 3, "{members:?}");
        for (a, want) in [(addr(1), 250), (addr(2), 500), (addr(3), 250)] {
            let w = weight_of(&m, a).unwrap();
            assert!(w.abs_diff(want) <= 60, "{a}: {w} vs {want}");
        }
    }

    #[test]
    fn addresses_of_one_record_set_share_its_draw() {
        let mut m = WeightedMembers::default();
        for _ in 0..10 {
            m.observe(&[addr(1), addr(2)], 10);
            m.observe(&[addr(3)], 10);
        }
        assert_eq!(
            m.members(),
            vec![(addr(1), 250), (addr(2), 250), (addr(3), 500)]
        );
    }

    #[test]
    fn a_cached_repeat_is_not_a_draw() {
        let mut m = WeightedMembers::default();
        assert!(m.observe(&[addr(1)], 10));
        // The resolver's cache answers the same record with its TTL counting down...
        assert!(!m.observe(&[addr(1)], 9));
        assert!(!m.observe(&[addr(1)], 3));
        // ...until it expires and asks again: a fresh draw, whatever it names.
        assert!(m.observe(&[addr(1)], 10));
        assert!(m.observe(&[addr(2)], 10));
        assert!(
            m.observe(&[addr(2)], 10),
            "same TTL: an uncached server's answer"
        );
        assert_eq!(m.draws, 4);
    }

    #[test]
    fn a_withdrawn_member_leaves_after_its_absence_bound_and_not_before() {
        let sets = vec![(1, vec![addr(1)]), (1, vec![addr(2)]), (2, vec![addr(3)])];
        let mut rng = StdRng::seed_from_u64(5);
        let mut m = WeightedMembers::default();
        for _ in 0..WEIGHTED_WINDOW {
            m.observe(draw(&sets, &mut rng), 10);
        }
        assert_eq!(m.members().len(), 3);
        // Withdraw addr(1) (share ~0.25): it goes after its bound (≈48 draws, counted from its
        // last draw), and the others stay throughout.
        while m.draws == 0 || m.last[&addr(1)].0 != m.draws {
            m.observe(draw(&sets, &mut rng), 10);
        }
        let bound = m.last[&addr(1)].1;
        assert!((30..=60).contains(&bound), "{bound}");
        let rest = vec![(1, vec![addr(2)]), (2, vec![addr(3)])];
        let mut left_after = None;
        for i in 1..=bound {
            m.observe(draw(&rest, &mut rng), 10);
            assert!(weight_of(&m, addr(2)).is_some() && weight_of(&m, addr(3)).is_some());
            if left_after.is_none() && weight_of(&m, addr(1)).is_none() {
                left_after = Some(i);
            }
        }
        assert_eq!(left_after, Some(bound), "left before or after its bound");
    }

    #[test]
    fn absence_bound_follows_the_share() {
        let mut m = WeightedMembers::default();
        for i in 0..100u8 {
            // addr(1) in every other draw, addr(2) in one of ten, addr(3) in the rest.
            let a = if i % 2 == 0 {
                addr(1)
            } else if i % 10 == 1 {
                addr(2)
            } else {
                addr(3)
            };
            m.observe(&[a], 10);
        }
        assert_eq!(m.absent_after(&addr(1)), WEIGHTED_MIN_ABSENT); // p = 0.5 → 20 → floor 30
        assert_eq!(m.absent_after(&addr(2)), 132); // p = 0.1
        assert_eq!(m.absent_after(&addr(9)), WEIGHTED_WINDOW as u64); // never seen
    }

    #[test]
    fn an_empty_answer_ages_every_member() {
        let mut m = WeightedMembers::default();
        m.observe(&[addr(1)], 10);
        for _ in 0..WEIGHTED_MIN_ABSENT - 1 {
            m.observe(&[], 0);
            assert_eq!(m.members().len(), 1);
        }
        m.observe(&[], 0);
        assert!(m.members().is_empty());
    }

    /// Across 40 seeded scenarios (2-4 members, weights 20..=255, Route 53's range) of 2,000
    /// draws each, a member whose record is still published is never dropped once seen, and
    /// every member is seen. (Seeded, not proptest: the design accepts a 10⁻⁶ chance per gap,
    /// which random seeds would turn into a rare flake.)
    #[test]
    fn live_members_are_never_dropped() {
        for seed in 0..40u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let n = rng.random_range(2..=4u8);
            let sets: Vec<(u32, Vec<SocketAddr>)> = (1..=n)
                .map(|i| (rng.random_range(20..=255), vec![addr(i)]))
                .collect();
            let mut m = WeightedMembers::default();
            let mut seen = std::collections::HashSet::new();
            for _ in 0..2_000 {
                let d = draw(&sets, &mut rng);
                seen.extend(d.iter().copied());
                m.observe(d, 10);
                let now: Vec<SocketAddr> = m.members().iter().map(|(a, _)| *a).collect();
                for a in &seen {
                    assert!(now.contains(a), "seed {seed}: {a} dropped ({sets:?})");
                }
            }
            assert_eq!(seen.len(), sets.len(), "seed {seed}");
        }
    }
}
