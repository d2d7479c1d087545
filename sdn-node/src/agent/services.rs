//! The service maps follow the `services/` and `endpoints/` records of the informer: the pure
//! core (`crate::services`) says which frontends and backends there should be, this shell
//! writes what differs from what it wrote last. Frontend ids survive a restart (they are read
//! back from the pinned map), so tracked connections keep theirs.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use sdn_cluster::Keys;
use sdn_cluster::informer::Informer;
use sdn_cluster::services::{Endpoints, Service};
use sdn_cluster::store::decode;
use sdn_ebpf_common::ServiceKey;

use crate::bpf::services::{backend_value, frontend_key, marker_key};
use crate::bpf::{BpfError, Dataplane, ip_key};
use crate::maps::FlowMaps;
use crate::services::{self, Table};

/// What the maps hold, as this agent wrote (or found) it.
pub struct ServiceSync {
    /// Frontends in the map: their id and backend count.
    frontends: HashMap<ServiceKey, (u32, u32)>,
    /// Cluster IPs with a marker, network order.
    markers: BTreeSet<u32>,
    /// The table last written; empty after a start, so the first sync writes every frontend.
    written: Table,
    /// The informer revision of the last sync: nothing can have changed while it stands.
    synced_revision: i64,
    /// The fingerprints of `services/` and `endpoints/` the last sync read: nothing to do while
    /// equal.
    seen: Option<((usize, i64), (usize, i64))>,
    /// Records already logged as unreadable or unsupported, so each is logged once.
    reported: BTreeSet<String>,
}

impl Default for ServiceSync {
    fn default() -> Self {
        Self::new()
    }
}

impl ServiceSync {
    /// Maps that hold nothing yet (a simulated agent's).
    pub fn new() -> Self {
        Self {
            frontends: HashMap::new(),
            markers: BTreeSet::new(),
            written: Table::new(),
            synced_revision: -1,
            seen: None,
            reported: BTreeSet::new(),
        }
    }

    /// Takes over the frontends and markers the pinned map holds.
    pub fn adopt(dataplane: &Dataplane) -> Result<Self, BpfError> {
        let mut frontends = HashMap::new();
        let mut markers = BTreeSet::new();
        for (key, entry) in dataplane.service_entries()? {
            if key.port == 0 && key.protocol == 0 {
                markers.insert(key.ip);
            } else {
                frontends.insert(key, (entry.id, entry.count));
            }
        }
        Ok(Self {
            frontends,
            markers,
            written: Table::new(),
            synced_revision: -1,
            seen: None,
            reported: BTreeSet::new(),
        })
    }

    /// Brings the maps in line with the records in the informer's cache. Returns the number of
    /// frontends and of backends the maps then hold.
    pub fn sync(
        &mut self,
        informer: &Informer,
        keys: &Keys,
        dataplane: &mut impl FlowMaps,
    ) -> Result<(usize, usize), BpfError> {
        let (services, endpoints) = {
            let cache = informer.read();
            if cache.revision() == self.synced_revision {
                return Ok(self.counts());
            }
            self.synced_revision = cache.revision();
            let (service_dir, endpoints_dir) = (keys.services(), keys.endpoints());
            let seen = (cache.fingerprint(&service_dir), cache.fingerprint(&endpoints_dir));
            if self.seen == Some(seen) {
                return Ok(self.counts());
            }
            self.seen = Some(seen);
            let services: Vec<Service> = self.readable(cache.range(&service_dir));
            let endpoints: Vec<Endpoints> = self.readable(cache.range(&endpoints_dir));
            (services, endpoints)
        };
        let wanted = services::wanted(&services, &endpoints);
        for port in &wanted.unsupported {
            if self.reported.insert(format!("unsupported {port}")) {
                tracing::warn!("service port {port} is not load-balanced: only TCP and UDP on IPv4 cluster IPs are");
            }
        }
        if let Err(err) = self.write(&wanted.table, dataplane) {
            // The next sync tries again, whether or not anything changes meanwhile.
            (self.synced_revision, self.seen) = (-1, None);
            return Err(err);
        }
        Ok(self.counts())
    }

    fn readable<'a, T: serde::de::DeserializeOwned>(
        &mut self,
        records: impl Iterator<Item = (&'a str, &'a sdn_cluster::informer::Entry)>,
    ) -> Vec<T> {
        records
            .filter_map(|(key, entry)| match decode::<T>(key, &entry.value) {
                Ok(record) => Some(record),
                Err(err) => {
                    if self.reported.insert(format!("{key}@{}", entry.mod_revision)) {
                        tracing::warn!("services skip a record: {err}");
                    }
                    None
                }
            })
            .collect()
    }

    fn write(&mut self, wanted: &Table, dataplane: &mut impl FlowMaps) -> Result<(), BpfError> {
        let changes = services::diff(&self.written, wanted);
        // New cluster IPs are marked before their frontends exist, old ones after theirs went.
        let wanted_ips: BTreeSet<u32> = wanted.keys().map(|frontend| ip_key(frontend.ip)).collect();
        for ip in wanted_ips.difference(&self.markers.clone()) {
            dataplane.write_marker(Ipv4Addr::from(ip.to_ne_bytes()))?;
            self.markers.insert(*ip);
        }
        for (frontend, port) in &changes.upsert {
            let key = frontend_key(frontend);
            let (id, old_count) = match self.frontends.get(&key) {
                Some(&(id, count)) => (id, count),
                None => (self.free_id(), 0),
            };
            let backends: Vec<_> = port.backends.iter().map(backend_value).collect();
            dataplane.write_frontend(key, id, &backends, port.affinity.unwrap_or(0), old_count)?;
            self.frontends.insert(key, (id, u32::try_from(backends.len()).unwrap_or(u32::MAX)));
        }
        // What the map holds but the records no longer name: removed services, and anything an
        // earlier agent wrote that this one's records do not have.
        let wanted_keys: std::collections::HashSet<ServiceKey> = wanted.keys().map(frontend_key).collect();
        let gone: Vec<(ServiceKey, (u32, u32))> =
            self.frontends.iter().filter(|(key, _)| !wanted_keys.contains(key)).map(|(k, v)| (*k, *v)).collect();
        for (key, (id, count)) in gone {
            dataplane.remove_frontend(key, id, count)?;
            self.frontends.remove(&key);
        }
        for ip in self.markers.clone().difference(&wanted_ips) {
            dataplane.remove_frontend(marker_key(Ipv4Addr::from(ip.to_ne_bytes())), 0, 0)?;
            self.markers.remove(ip);
        }
        self.written = wanted.clone();
        Ok(())
    }

    /// The lowest id no frontend has (0 is never one).
    fn free_id(&self) -> u32 {
        let used: BTreeSet<u32> = self.frontends.values().map(|(id, _)| *id).collect();
        (1..).find(|id| !used.contains(id)).unwrap_or(u32::MAX)
    }

    fn counts(&self) -> (usize, usize) {
        (self.frontends.len(), self.frontends.values().map(|(_, count)| *count as usize).sum())
    }
}
