//! An authoritative DNS server for tests: hickory-server in process, UDP on 127.0.0.1:0, with
//! one in-memory zone whose records a test replaces while the hub resolves it (TTL 1 s).

use hickory_proto::rr::rdata::{SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType, RrKey};
use hickory_server::Server;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::net::UdpSocket;

/// A running test DNS server; it stops when dropped.
pub struct TestDns {
    /// Where to send queries (the hub's `dns_server`).
    pub addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    serial: AtomicU32,
    _server: Server<Catalog>,
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
        let mut server = Server::new(catalog);
        server.register_socket(socket);
        Ok(TestDns {
            addr,
            zone,
            serial: AtomicU32::new(2),
            _server: server,
        })
    }

    /// Replaces every record of (`name`, `rtype`) with `data`, TTL 1 s; empty `data` removes them.
    pub async fn set(&self, name: &str, rtype: RecordType, data: Vec<RData>) -> anyhow::Result<()> {
        let name = Name::from_str(name)?;
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
