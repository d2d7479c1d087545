//! The service maps follow the `services/` and `endpoints/` records of the informer: the pure
//! core (`crate::services`) says which frontends and backends there should be, this shell
//! writes what differs from what it wrote last. Frontend ids survive a restart (they are read
//! back from the pinned map), so tracked connections keep theirs.
//!
//! A sync decodes only the services whose record or endpoints changed since the last one, and
//! makes their frontends again. Decoding all 10,000 services with their endpoints on every
//! event made most of the agent's memory churn (glibc kept the pages) and CPU per event.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnetwork::Ipv4Network;

use sdn_cluster::Keys;
use sdn_cluster::informer::{Cache, Entry, Informer};
use sdn_cluster::services::{Endpoints, Service};
use sdn_cluster::store::decode;
use sdn_ebpf_common::ServiceKey;

use crate::bpf::services::{backend_value, frontend_key, marker_key};
use crate::bpf::{BpfError, Dataplane, ip_key};
use crate::maps::FlowMaps;
use crate::services::{self, Frontend, ServicePort, Table};

/// What the maps hold, as this agent wrote (or found) it.
pub struct ServiceSync {
    /// The IPv4 service network (`None`: the cluster's is IPv6): the only cluster IPs the
    /// programs translate.
    network: Option<Ipv4Network>,
    /// Frontends in the map: their id and backend count.
    frontends: HashMap<ServiceKey, (u32, u32)>,
    /// Cluster IPs with a marker, network order.
    markers: BTreeSet<u32>,
    /// The table last written; empty after a start, so the first sync writes every frontend.
    written: Table,
    /// The mod revisions of the records `written` was made from, by `<namespace>/<name>`.
    /// Empty whenever `written` is.
    loaded: HashMap<Box<str>, Loaded>,
    /// Flips on every sync that compares revisions: a loaded record that the last one did not
    /// see is gone.
    pass: bool,
    /// Some record is not at the key of its own namespace and name, or two services ask for
    /// one frontend: a record then decides more than its own service's frontends, so every
    /// sync reads all of them, as `services::wanted` defines the table.
    entangled: bool,
    /// Where the cache's change log stood at the last sync: nothing can have changed while it
    /// stands. (Not the cache's revision: that is the newest of its watch streams', and a
    /// stream can be behind another, so an event may arrive without raising it.)
    synced_at: Option<u64>,
    /// The fingerprints of `services/` and `endpoints/` the last sync read: nothing to do while
    /// equal.
    seen: Option<((usize, i64), (usize, i64))>,
    /// Records already logged as unreadable or unsupported, so each is logged once.
    reported: BTreeSet<String>,
}

/// The revisions of one service's records that were loaded ([`NONE`]: no record), each with
/// the pass that saw it.
#[derive(Debug, Clone, Copy, Default)]
struct Loaded {
    service: (i64, bool),
    endpoints: (i64, bool),
}

/// No record: etcd's revisions start at 1.
const NONE: i64 = 0;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Service,
    Endpoints,
}

impl Loaded {
    fn record(&mut self, kind: Kind) -> &mut (i64, bool) {
        match kind {
            Kind::Service => &mut self.service,
            Kind::Endpoints => &mut self.endpoints,
        }
    }
}

/// What a sync read from the cache.
enum Update {
    /// Every record: the table is made again from them.
    All { services: Vec<Service>, endpoints: Vec<Endpoints> },
    /// The services named (`<namespace>/<name>`) changed; `table` is all their frontends now.
    Some { services: BTreeSet<String>, table: Table },
}

impl ServiceSync {
    /// Maps that hold nothing yet (a simulated agent's), for cluster IPs in `network`.
    pub fn new(network: Option<Ipv4Network>) -> Self {
        Self::holding(network, HashMap::new(), BTreeSet::new())
    }

    fn holding(
        network: Option<Ipv4Network>,
        frontends: HashMap<ServiceKey, (u32, u32)>,
        markers: BTreeSet<u32>,
    ) -> Self {
        Self {
            network,
            frontends,
            markers,
            written: Table::new(),
            loaded: HashMap::new(),
            pass: false,
            entangled: false,
            synced_at: None,
            seen: None,
            reported: BTreeSet::new(),
        }
    }

    /// Serves cluster IPs in `network` from now on (the master took a wider one): the next sync
    /// reads every record, so services it left out as outside the old network get their
    /// frontends.
    pub fn set_network(&mut self, network: Option<Ipv4Network>) {
        if self.network != network {
            self.network = network;
            (self.synced_at, self.seen, self.entangled) = (None, None, true);
        }
    }

    /// Takes over the frontends and markers the pinned map holds, for cluster IPs in `network`.
    pub fn adopt(dataplane: &Dataplane, network: Option<Ipv4Network>) -> Result<Self, BpfError> {
        let mut frontends = HashMap::new();
        let mut markers = BTreeSet::new();
        for (key, entry) in dataplane.service_entries()? {
            if key.port == 0 && key.protocol == 0 {
                markers.insert(key.ip);
            } else {
                frontends.insert(key, (entry.id, entry.count));
            }
        }
        Ok(Self::holding(network, frontends, markers))
    }

    /// Brings the maps in line with the records in the informer's cache. Returns the number of
    /// frontends and of backends the maps then hold.
    pub fn sync(
        &mut self,
        informer: &Informer,
        keys: &Keys,
        dataplane: &mut impl FlowMaps,
    ) -> Result<(usize, usize), BpfError> {
        self.sync_cache(&informer.read(), keys, dataplane)
    }

    /// [`ServiceSync::sync`] on the informer's cache.
    fn sync_cache(
        &mut self,
        cache: &Cache,
        keys: &Keys,
        dataplane: &mut impl FlowMaps,
    ) -> Result<(usize, usize), BpfError> {
        let update = {
            if self.synced_at == Some(cache.position()) {
                return Ok(self.counts());
            }
            self.synced_at = Some(cache.position());
            let (service_dir, endpoints_dir) = (keys.services(), keys.endpoints());
            let seen = (cache.fingerprint(&service_dir), cache.fingerprint(&endpoints_dir));
            if self.seen == Some(seen) {
                return Ok(self.counts());
            }
            self.seen = Some(seen);
            self.read(cache, &service_dir, &endpoints_dir)
        };
        if let Err(err) = self.apply(update, dataplane) {
            // The next sync tries again, whether or not anything changes meanwhile.
            (self.synced_at, self.seen) = (None, None);
            return Err(err);
        }
        Ok(self.counts())
    }

    /// What changed in the cache since the last sync, or every record when that cannot tell.
    fn read(&mut self, cache: &Cache, service_dir: &str, endpoints_dir: &str) -> Update {
        if !self.entangled
            && let Some(update) = self.read_changed(cache, service_dir, endpoints_dir)
        {
            return update;
        }
        self.read_all(cache, service_dir, endpoints_dir)
    }

    /// The services whose records changed, with their frontends now; `None` when some record
    /// is not at its own key or a frontend would be another service's too.
    fn read_changed(&mut self, cache: &Cache, service_dir: &str, endpoints_dir: &str) -> Option<Update> {
        self.pass = !self.pass;
        let pass = self.pass;
        let mut changed = BTreeSet::new();
        for (dir, kind) in [(service_dir, Kind::Service), (endpoints_dir, Kind::Endpoints)] {
            for (key, entry) in cache.range(dir) {
                let id = record_id(key, dir)?;
                if self.load(id, kind, entry.mod_revision, pass) {
                    changed.insert(id.to_owned());
                }
            }
        }
        self.loaded.retain(|id, loaded| {
            for kind in [Kind::Service, Kind::Endpoints] {
                let (revision, seen) = loaded.record(kind);
                if *revision != NONE && *seen != pass {
                    *revision = NONE;
                    changed.insert(id.to_string());
                }
            }
            loaded.service.0 != NONE || loaded.endpoints.0 != NONE
        });
        let mut table = Table::new();
        for id in &changed {
            let service: Option<Service> = self.record(cache, service_dir, id);
            let endpoints: Option<Endpoints> = self.record(cache, endpoints_dir, id);
            let elsewhere = |namespace: &str, name: &str| id.split_once('/') != Some((namespace, name));
            if service.as_ref().is_some_and(|s| elsewhere(&s.namespace, &s.name))
                || endpoints.as_ref().is_some_and(|e| elsewhere(&e.namespace, &e.name))
            {
                return None;
            }
            let part = services::wanted(service.as_slice(), endpoints.as_slice(), self.network);
            self.report(&part);
            for (frontend, port) in part.table {
                let theirs = |owner: &ServicePort| *owner.service != **id && !changed.contains(&*owner.service);
                if table.contains_key(&frontend) || self.written.get(&frontend).is_some_and(theirs) {
                    return None;
                }
                table.insert(frontend, port);
            }
        }
        Some(Update::Some { services: changed, table })
    }

    /// Every record; notes whether the table they make can be followed one service at a time.
    fn read_all(&mut self, cache: &Cache, service_dir: &str, endpoints_dir: &str) -> Update {
        self.loaded.clear();
        let mut at_own_keys = true;
        let mut services = Vec::new();
        for (key, entry) in cache.range(service_dir) {
            let service: Option<Service> = self.decode(key, entry);
            let names = service.as_ref().map(|s| (s.namespace.as_str(), s.name.as_str()));
            at_own_keys &= self.load_at(service_dir, key, names, Kind::Service, entry.mod_revision);
            services.extend(service);
        }
        let mut endpoints = Vec::new();
        for (key, entry) in cache.range(endpoints_dir) {
            let record: Option<Endpoints> = self.decode(key, entry);
            let names = record.as_ref().map(|e| (e.namespace.as_str(), e.name.as_str()));
            at_own_keys &= self.load_at(endpoints_dir, key, names, Kind::Endpoints, entry.mod_revision);
            endpoints.extend(record);
        }
        self.entangled = !at_own_keys;
        Update::All { services, endpoints }
    }

    /// Notes the revision of `key`'s record (named `names`, when readable); whether the key is
    /// that of its namespace and name.
    fn load_at(&mut self, dir: &str, key: &str, names: Option<(&str, &str)>, kind: Kind, revision: i64) -> bool {
        let Some(id) = record_id(key, dir) else { return false };
        self.load(id, kind, revision, self.pass);
        names.is_none_or(|names| id.split_once('/') == Some(names))
    }

    /// Notes that the record of `kind` of service `id` is at `revision`, seen in `pass`; whether
    /// that is another revision than the one loaded.
    fn load(&mut self, id: &str, kind: Kind, revision: i64, pass: bool) -> bool {
        // Looked up before inserting: a key is allocated only for a service not seen before.
        if !self.loaded.contains_key(id) {
            self.loaded.insert(id.into(), Loaded::default());
        }
        let Some(loaded) = self.loaded.get_mut(id) else { return true };
        let record = loaded.record(kind);
        let changed = record.0 != revision;
        *record = (revision, pass);
        changed
    }

    /// The record of `kind` at `<dir><id>`, if there is one and it can be read.
    fn record<T: serde::de::DeserializeOwned>(&mut self, cache: &Cache, dir: &str, id: &str) -> Option<T> {
        let key = format!("{dir}{id}");
        let entry = cache.get(&key)?;
        self.decode(&key, entry)
    }

    /// `key`'s record, logged once per revision when it cannot be read.
    fn decode<T: serde::de::DeserializeOwned>(&mut self, key: &str, entry: &Entry) -> Option<T> {
        match decode::<T>(key, &entry.value) {
            Ok(record) => Some(record),
            Err(err) => {
                if self.reported.insert(format!("{key}@{}", entry.mod_revision)) {
                    tracing::warn!("services skip a record: {err}");
                }
                None
            }
        }
    }

    fn report(&mut self, wanted: &services::Wanted) {
        for port in &wanted.unsupported {
            if self.reported.insert(format!("unsupported {port}")) {
                tracing::warn!("service port {port} is not load-balanced: only TCP and UDP on IPv4 cluster IPs are");
            }
        }
        for service in &wanted.outside {
            if self.reported.insert(format!("outside {service}")) {
                let network = self.network.map_or_else(|| "IPv6".to_owned(), |n| n.to_string());
                tracing::warn!(
                    "service {service} is not load-balanced: its cluster IP is outside the service network {network}"
                );
            }
        }
    }

    /// Writes what `update` changes in the table.
    fn apply(&mut self, update: Update, dataplane: &mut impl FlowMaps) -> Result<(), BpfError> {
        let (upsert, wanted) = match update {
            Update::All { services, endpoints } => {
                let wanted = services::wanted(&services, &endpoints, self.network);
                self.report(&wanted);
                self.entangled |= !wanted.shared.is_empty();
                (services::diff(&self.written, &wanted.table).upsert, wanted.table)
            }
            Update::Some { services, table } => {
                let upsert: Vec<(Frontend, ServicePort)> = table
                    .iter()
                    .filter(|(frontend, port)| self.written.get(frontend) != Some(port))
                    .map(|(frontend, port)| (*frontend, port.clone()))
                    .collect();
                let mut wanted = std::mem::take(&mut self.written);
                wanted.retain(|_, port| !services.contains(&*port.service));
                wanted.extend(table);
                (upsert, wanted)
            }
        };
        match self.write(&upsert, &wanted, dataplane) {
            Ok(()) => {
                self.written = wanted;
                Ok(())
            }
            Err(err) => {
                // The maps hold some of the table: the next sync reads every record again and
                // writes every frontend.
                self.written = Table::new();
                self.loaded.clear();
                Err(err)
            }
        }
    }

    /// Writes `upsert` and removes what `wanted` (the table once written) no longer has.
    fn write(
        &mut self,
        upsert: &[(Frontend, ServicePort)],
        wanted: &Table,
        dataplane: &mut impl FlowMaps,
    ) -> Result<(), BpfError> {
        let mut ids = FreeIds::default();
        // New cluster IPs are marked before their frontends exist, old ones after theirs went.
        let wanted_ips: BTreeSet<u32> = wanted.keys().map(|frontend| ip_key(frontend.ip)).collect();
        for ip in wanted_ips.difference(&self.markers.clone()) {
            dataplane.write_marker(Ipv4Addr::from(ip.to_ne_bytes()))?;
            self.markers.insert(*ip);
        }
        for (frontend, port) in upsert {
            let key = frontend_key(frontend);
            let (id, old_count) = match self.frontends.get(&key) {
                Some(&(id, count)) => (id, count),
                None => (ids.take(&self.frontends), 0),
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
        Ok(())
    }

    fn counts(&self) -> (usize, usize) {
        (self.frontends.len(), self.frontends.values().map(|(_, count)| *count as usize).sum())
    }
}

/// The lowest ids no frontend has (0 is never one), for frontends added one after another. The
/// ids in use are collected once per write rather than once per new frontend: 9,000 new ones
/// took seconds of CPU that way.
#[derive(Default)]
struct FreeIds {
    used: Option<BTreeSet<u32>>,
    /// Every id below it is in use (nothing is removed while ids are handed out).
    next: u32,
}

impl FreeIds {
    /// The lowest id none of `frontends` has, nor any id handed out before.
    fn take(&mut self, frontends: &HashMap<ServiceKey, (u32, u32)>) -> u32 {
        let used = self.used.get_or_insert_with(|| frontends.values().map(|(id, _)| *id).collect());
        let mut id = self.next.max(1);
        while used.contains(&id) {
            let Some(next) = id.checked_add(1) else { return u32::MAX };
            id = next;
        }
        used.insert(id);
        self.next = id.saturating_add(1);
        id
    }
}

/// The `<namespace>/<name>` of the record at `key` under `dir`, if that is all the key holds.
fn record_id<'a>(key: &'a str, dir: &str) -> Option<&'a str> {
    let id = key.strip_prefix(dir)?;
    let (namespace, name) = id.split_once('/')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains('/')).then_some(id)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::maps::MemoryMaps;

    const NET: Option<Ipv4Network> = Some(sdn_cluster::network::DEFAULT_SERVICE_NETWORK);

    const SERVICES: &str = "/sdn/services/";
    const ENDPOINTS: &str = "/sdn/endpoints/";

    fn service(namespace: &str, name: &str, ip: &str, port: u16) -> String {
        format!(
            r#"{{"namespace":"{namespace}","name":"{name}","clusterIP":"{ip}","ports":[{{"name":"http","port":{port}}}]}}"#
        )
    }

    fn endpoints(namespace: &str, name: &str, ips: &[&str]) -> String {
        let addresses: Vec<String> = ips.iter().map(|ip| format!(r#"{{"ip":"{ip}"}}"#)).collect();
        format!(
            r#"{{"namespace":"{namespace}","name":"{name}","addresses":[{}],"ports":[{{"name":"http","port":8080}}]}}"#,
            addresses.join(",")
        )
    }

    /// The records of a cluster, as the informer's cache would hold them after `revision`.
    #[derive(Default)]
    struct Records {
        entries: BTreeMap<String, Entry>,
        revision: i64,
    }

    impl Records {
        fn put(&mut self, key: &str, value: &str) {
            self.revision += 1;
            let entry =
                Entry { value: value.as_bytes().into(), create_revision: self.revision, mod_revision: self.revision };
            self.entries.insert(key.to_owned(), entry);
        }

        fn delete(&mut self, key: &str) {
            self.revision += 1;
            self.entries.remove(key);
        }

        fn cache(&self) -> Cache {
            self.entries.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        }

        /// The table of every readable record, made at once.
        fn wanted(&self) -> Table {
            fn readable<T: serde::de::DeserializeOwned>(records: &Records, dir: &str) -> Vec<T> {
                let under = records.entries.iter().filter(|(key, _)| key.starts_with(dir));
                under.filter_map(|(key, entry)| decode(key, &entry.value).ok()).collect()
            }
            services::wanted(&readable(self, SERVICES), &readable(self, ENDPOINTS), NET).table
        }
    }

    /// What the maps hold, frontend by frontend: backends (ids depend on the order of writes).
    fn held(maps: &MemoryMaps) -> BTreeMap<(u32, u16, u8), Vec<(u32, u16)>> {
        let frontends = maps.frontends.iter();
        let backends = |b: &[sdn_ebpf_common::Backend]| b.iter().map(|b| (b.ip, b.port)).collect();
        frontends.map(|(key, (_, b, _))| ((key.ip, key.port, key.protocol), backends(b))).collect()
    }

    fn sync(services: &mut ServiceSync, records: &Records, maps: &mut MemoryMaps) {
        let update = services.read(&records.cache(), SERVICES, ENDPOINTS);
        services.apply(update, maps).expect("memory maps");
    }

    #[test]
    fn an_event_that_does_not_raise_the_cache_revision_is_synced() {
        let keys = Keys::new("/sdn");
        let entry = |value: String, revision| Entry {
            value: value.into_bytes().into(),
            create_revision: revision,
            mod_revision: revision,
        };
        let mut cache: Cache = [
            (format!("{SERVICES}ns/web"), entry(service("ns", "web", "172.30.0.1", 80), 1)),
            (format!("{ENDPOINTS}ns/web"), entry(endpoints("ns", "web", &["10.1.0.1"]), 2)),
            // Another watch stream is ahead: the cache is at its revision.
            ("/sdn/subnets/n1".to_owned(), entry("{}".to_owned(), 10)),
        ]
        .into_iter()
        .collect();
        let (mut services, mut maps) = (ServiceSync::new(NET), MemoryMaps::default());
        services.sync_cache(&cache, &keys, &mut maps).expect("memory maps");
        let backends = |maps: &MemoryMaps| held(maps).into_values().flatten().map(|(ip, _)| ip).collect::<Vec<_>>();
        assert_eq!(backends(&maps), [u32::from_ne_bytes([10, 1, 0, 1])]);
        // The endpoints stream's event at revision 5 arrives after that: the revision stays 10.
        cache.watched_put(format!("{ENDPOINTS}ns/web").into(), entry(endpoints("ns", "web", &["10.1.0.2"]), 5));
        assert_eq!(cache.revision(), 10);
        services.sync_cache(&cache, &keys, &mut maps).expect("memory maps");
        assert_eq!(backends(&maps), [u32::from_ne_bytes([10, 1, 0, 2])], "the new backend is in the maps");
    }

    #[test]
    fn a_wider_service_network_brings_the_services_it_adds() {
        let keys = Keys::new("/sdn");
        let mut records = Records::default();
        records.put(&format!("{SERVICES}ns/web"), &service("ns", "web", "172.30.0.1", 80));
        records.put(&format!("{SERVICES}ns/far"), &service("ns", "far", "172.31.0.1", 80));
        let (mut services, mut maps) = (ServiceSync::new(NET), MemoryMaps::default());
        // Frontends on port 80 (not the cluster IPs' markers).
        let ips = |maps: &MemoryMaps| {
            held(maps)
                .into_keys()
                .filter(|&(_, port, _)| port != 0)
                .map(|(ip, _, _)| ip.to_ne_bytes())
                .collect::<Vec<_>>()
        };
        services.sync_cache(&records.cache(), &keys, &mut maps).expect("memory maps");
        assert_eq!(ips(&maps), [[172, 30, 0, 1]], "172.31.0.1 is outside 172.30.0.0/16");
        // Nothing in the records changes: the network does, and the next sync reads them again.
        services.set_network(Some("172.30.0.0/15".parse().expect("cidr")));
        services.sync_cache(&records.cache(), &keys, &mut maps).expect("memory maps");
        assert_eq!(ips(&maps), [[172, 30, 0, 1], [172, 31, 0, 1]]);
    }

    #[test]
    fn new_frontends_take_the_lowest_free_ids() {
        let key = |port: u16| ServiceKey { ip: 1, port, protocol: 6, _pad: 0 };
        let frontends: HashMap<ServiceKey, (u32, u32)> = [(key(1), (1, 0)), (key(2), (2, 0)), (key(4), (4, 0))].into();
        let mut ids = FreeIds::default();
        let taken: Vec<u32> = (0..3).map(|_| ids.take(&frontends)).collect();
        assert_eq!(taken, [3, 5, 6]);
        assert_eq!(FreeIds::default().take(&HashMap::new()), 1, "0 is never an id");
    }

    #[test]
    fn following_changes_gives_the_maps_a_fresh_agent_writes() {
        let mut records = Records::default();
        let (mut following, mut maps) = (ServiceSync::new(NET), MemoryMaps::default());
        let mut step = |records: &Records, what: &str| {
            sync(&mut following, records, &mut maps);
            assert_eq!(following.written, records.wanted(), "{what}");
            let (mut fresh, mut fresh_maps) = (ServiceSync::new(NET), MemoryMaps::default());
            sync(&mut fresh, records, &mut fresh_maps);
            assert_eq!(held(&maps), held(&fresh_maps), "{what}");
            following.entangled
        };
        for i in 0..20 {
            records.put(&format!("{SERVICES}ns/s{i}"), &service("ns", &format!("s{i}"), &format!("172.30.0.{i}"), 80));
            records.put(&format!("{ENDPOINTS}ns/s{i}"), &endpoints("ns", &format!("s{i}"), &[&format!("10.1.0.{i}")]));
        }
        assert!(!step(&records, "the first records"));
        records.put(&format!("{ENDPOINTS}ns/s3"), &endpoints("ns", "s3", &["10.1.1.1", "10.1.1.2"]));
        records.put(&format!("{SERVICES}ns/s4"), &service("ns", "s4", "172.30.0.4", 81));
        assert!(!step(&records, "endpoints and a port changed"));
        records.delete(&format!("{SERVICES}ns/s5"));
        records.delete(&format!("{ENDPOINTS}ns/s6"));
        records.put(&format!("{ENDPOINTS}ns/new"), &endpoints("ns", "new", &["10.1.2.1"]));
        assert!(!step(&records, "a service gone, endpoints gone, endpoints before their service"));
        records.put(&format!("{SERVICES}ns/new"), &service("ns", "new", "172.30.0.99", 80));
        records.put(&format!("{SERVICES}ns/bad"), "{not json");
        assert!(!step(&records, "the service after its endpoints, an unreadable record"));

        // Two services on one frontend: the later key's wins, and whichever changes, the other
        // may get it back.
        records.put(&format!("{SERVICES}ns/twin"), &service("ns", "twin", "172.30.0.7", 80));
        assert!(step(&records, "a frontend asked for twice"));
        records.put(&format!("{ENDPOINTS}ns/twin"), &endpoints("ns", "twin", &["10.1.3.1"]));
        assert!(step(&records, "its endpoints"));
        records.delete(&format!("{SERVICES}ns/twin"));
        assert!(!step(&records, "the frontend is the first one's again"));
        records.put(&format!("{SERVICES}ns/s8"), &service("ns", "s8", "172.30.0.9", 80));
        assert!(step(&records, "a port moved onto another service's"));
        records.put(&format!("{SERVICES}ns/s8"), &service("ns", "s8", "172.30.0.8", 80));
        assert!(!step(&records, "and back"));

        // A record at a key that is not its name's.
        records.put(&format!("{ENDPOINTS}ns/s9"), &endpoints("ns", "s10", &["10.1.4.1"]));
        assert!(step(&records, "endpoints at another service's key"));
        records.put(&format!("{ENDPOINTS}ns/s9"), &endpoints("ns", "s9", &["10.1.4.1"]));
        assert!(!step(&records, "put right"));
        records.put(&format!("{SERVICES}odd/key/deep"), &service("odd", "key", "172.30.0.50", 80));
        assert!(step(&records, "a key below a service's"));
        records.delete(&format!("{SERVICES}odd/key/deep"));
        for i in 0..20 {
            records.delete(&format!("{SERVICES}ns/s{i}"));
        }
        assert!(!step(&records, "most services gone"));
        assert_eq!(maps.frontends.len(), 2 * following.written.len(), "a marker each");
    }
}
