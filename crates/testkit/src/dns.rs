//! An authoritative DNS server for tests: hickory-server in process, UDP on 127.0.0.1:0, with
//! one in-memory zone whose records a test replaces while the hub resolves it (TTL 1 s).
//!
//! A name can also be served like a Route 53 *weighted* record set ([`TestDns::set_weighted`]):
//! each query is answered with ONE of its records, drawn at random by weight.

use hickory_proto::rr::rdata::{SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use parking_lot::Mutex;
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::net::UdpSocket;

/// Per (name, type): the weighted records (weight, data) a query draws one of.
type WeightedSets = Arc<Mutex<HashMap<(LowerName, RecordType), Vec<(u32, RData)>>>>;

/// A running test DNS server; it stops when dropped.
pub struct TestDns {
    /// Where to send queries (the hub's `dns_server`).
    pub addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    serial: Arc<AtomicU32>,
    weighted: WeightedSets,
    queries: Arc<Mutex<HashMap<(LowerName, RecordType), u64>>>,
    _server: Server<WeightedCatalog>,
}

/// The zone's catalog, in front of which weighted names get one record per query.
struct WeightedCatalog {
    catalog: Catalog,
    zone: Arc<InMemoryZoneHandler>,
    serial: Arc<AtomicU32>,
    weighted: WeightedSets,
    queries: Arc<Mutex<HashMap<(LowerName, RecordType), u64>>>,
    /// Held from the draw to the answer, so a concurrent query cannot swap the record between.
    answering: tokio::sync::Mutex<()>,
}

#[async_trait::async_trait]
impl RequestHandler for WeightedCatalog {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let key = request
            .request_info()
            .ok()
            .map(|i| (i.query.name().clone(), i.query.query_type()));
        let Some(key) = key else {
            return self
                .catalog
                .handle_request::<R, T>(request, response_handle)
                .await;
        };
        *self.queries.lock().entry(key.clone()).or_default() += 1;
        let _one_at_a_time = self.answering.lock().await;
        // Some(None): a weighted name with nothing to draw answers with no records.
        let drawn = {
            let sets = self.weighted.lock();
            sets.get(&key).map(|set| draw(set).cloned())
        };
        if let Some(drawn) = drawn {
            self.zone
                .records_mut()
                .await
                .remove(&RrKey::new(key.0.clone(), key.1));
            if let Some(data) = drawn {
                let serial = self.serial.fetch_add(1, Ordering::Relaxed);
                self.zone
                    .upsert(Record::from_rdata(Name::from(&key.0), 1, data), serial)
                    .await;
            }
        }
        self.catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// One record drawn by weight (records of weight 0 are never drawn; none left = `None`).
fn draw(set: &[(u32, RData)]) -> Option<&RData> {
    let total: u64 = set.iter().map(|(w, _)| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut r = rand::rng().random_range(0..total);
    for (w, d) in set {
        if r < u64::from(*w) {
            return Some(d);
        }
        r -= u64::from(*w);
    }
    None
}

impl TestDns {
    /// Serves the zone `origin` (e.g. `"pool.test."`), holding only its SOA at first.
    pub async fn start(origin: &str) -> anyhow::Result<TestDns> {
        let origin = Name::from_str(origin)?;
        let zone = InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            Name::from_str("ns.pool.test.")?,
            Name::from_str("admin.pool.test.")?,
            1,
            60,
            60,
            600,
            1,
        );
        zone.upsert(Record::from_rdata(origin.clone(), 1, RData::SOA(soa)), 1)
            .await;
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![zone.clone()]);
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let serial = Arc::new(AtomicU32::new(2));
        let weighted = Arc::new(Mutex::new(HashMap::new()));
        let queries = Arc::new(Mutex::new(HashMap::new()));
        let mut server = Server::new(WeightedCatalog {
            catalog,
            zone: zone.clone(),
            serial: serial.clone(),
            weighted: weighted.clone(),
            queries: queries.clone(),
            answering: tokio::sync::Mutex::new(()),
        });
        server.register_socket(socket);
        Ok(TestDns {
            addr,
            zone,
            serial,
            weighted,
            queries,
            _server: server,
        })
    }

    /// Serves (`name`, `rtype`) like a Route 53 weighted record set: every query is answered with
    /// exactly one of `records`, drawn at random in proportion to its weight (weight 0 = never,
    /// as a record withdrawn by a failing health check). An empty list, or all weights 0,
    /// answers with no records. Replaces any earlier records of that name and type.
    pub fn set_weighted(
        &self,
        name: &str,
        rtype: RecordType,
        records: Vec<(u32, RData)>,
    ) -> anyhow::Result<()> {
        let lower = LowerName::new(&Name::from_str(name)?);
        self.weighted.lock().insert((lower, rtype), records);
        Ok(())
    }

    /// How many queries for (`name`, `rtype`) this server has answered.
    pub fn queries(&self, name: &str, rtype: RecordType) -> u64 {
        let Ok(name) = Name::from_str(name) else {
            return 0;
        };
        self.queries
            .lock()
            .get(&(LowerName::new(&name), rtype))
            .copied()
            .unwrap_or(0)
    }

    /// Replaces every record of (`name`, `rtype`) with `data`, TTL 1 s; empty `data` removes them.
    pub async fn set(&self, name: &str, rtype: RecordType, data: Vec<RData>) -> anyhow::Result<()> {
        let name = Name::from_str(name)?;
        self.weighted.lock().remove(&(LowerName::new(&name), rtype));
        self.zone
            .records_mut()
            .await
            .remove(&RrKey::new(LowerName::new(&name), rtype));
        for d in data {
            let serial = self.serial.fetch_add(1, Ordering::Relaxed);
            self.zone
                .upsert(Record::from_rdata(name.clone(), 1, d), serial)
                .await;
        }
        Ok(())
    }
}

/// An SRV record data pointing at `target:port` with `weight` (priority 0).
pub fn srv(target: &str, port: u16, weight: u16) -> anyhow::Result<RData> {
    Ok(RData::SRV(SRV::new(
        0,
        weight,
        port,
        Name::from_str(target)?,
    )))
}
