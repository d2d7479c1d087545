//! The `Index`: services and their ready endpoints, keyed for the questions DNS asks, and kept
//! up to date one record at a time.
//!
//! Names in the zone have a fixed shape (`<svc>.<ns>.svc.<zone>` and what hangs below it), so
//! the index keeps one entry per service rather than one per name: a question is split into its
//! labels and looked up by `<svc>.<ns>`. That holds 10,000 services with 50,000 endpoints in a
//! few megabytes, and one etcd event touches one entry. Only PTR needs a second map, by address.

mod ptr;
mod ready;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use sdn_cluster::records::validate_label;
use sdn_cluster::{Endpoints, Port, Protocol, RecordError, Service};

use crate::config::{Config, ConfigError, Settings};
use crate::names::dashed;
use ptr::{Ids, PtrOwner, Reverse};
pub(crate) use ready::{Endpoint, Ready};

/// A service or endpoints record the index did not take, and why. Its name then answers as if
/// the record were absent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("{kind} {record}: {source}")]
    Record {
        kind: &'static str,
        /// `<namespace>/<name>`.
        record: String,
        source: Box<RecordError>,
    },
}

/// The label that matches every service or namespace.
pub(crate) const WILDCARD: &str = "*";

/// What the DNS answers from. Build it with [`Index::new`] and [`Index::load`], then follow the
/// registry with the `upsert`/`set`/`remove` calls.
#[derive(Debug, Clone)]
pub struct Index {
    pub(crate) settings: Settings,
    /// By `<svc>.<ns>`: the labels of the service's name in DNS order.
    entries: HashMap<Arc<str>, Entry>,
    /// Services per namespace: a namespace exists (as `<ns>.svc.<zone>` and so on) while it
    /// has one.
    namespaces: HashMap<Box<str>, u32>,
    /// Addresses with a PTR, inside the networks whose reverse names are ours.
    reverse: Reverse,
    /// The entries' keys by their ids, which `reverse` holds.
    ids: Ids,
    /// The SOA serial: bumped on every change, so it says which state an answer came from.
    serial: u32,
}

/// One service's records. Either may arrive first from etcd.
#[derive(Debug, Clone, Default)]
pub(crate) struct Entry {
    /// Its id in [`Index::ids`] while it is in the index.
    id: u32,
    pub service: Option<ServiceData>,
    /// Ready endpoints only (not-ready ones are never answered), each address once.
    pub endpoints: Ready,
    /// The endpoints' named ports: a headless service's SRV records use these.
    pub endpoint_ports: Box<[NamedPort]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceData {
    /// `None` for a headless service.
    pub cluster_ip: Option<IpAddr>,
    pub ports: Box<[NamedPort]>,
}

/// A port with a name: only those have SRV records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedPort {
    pub name: Box<str>,
    pub port: u16,
    pub protocol: Protocol,
}

/// The label an endpoint is known by under its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndpointLabel<'a> {
    Hostname(&'a str),
    Dashed(IpAddr),
}

impl EndpointLabel<'_> {
    pub fn text(self) -> String {
        match self {
            EndpointLabel::Hostname(h) => h.to_owned(),
            EndpointLabel::Dashed(ip) => dashed(ip),
        }
    }
}

impl Entry {
    pub fn headless(&self) -> bool {
        self.service.as_ref().is_some_and(|s| s.cluster_ip.is_none())
    }

    /// Whether `<svc>.<ns>.svc.<zone>` exists: the service exists and, when headless, has a
    /// ready endpoint (CoreDNS answers NXDOMAIN for a headless service without one).
    pub fn visible(&self) -> bool {
        self.service.is_some() && (!self.headless() || !self.endpoints.is_empty())
    }

    /// A hostname names an endpoint only in a headless service (Kubernetes DNS spec 2.4.1);
    /// every other endpoint is known by its dashed address.
    pub fn label_of<'a>(&self, endpoint: Endpoint<'a>) -> EndpointLabel<'a> {
        match endpoint.hostname {
            Some(hostname) if self.headless() => EndpointLabel::Hostname(hostname),
            _ => EndpointLabel::Dashed(endpoint.ip),
        }
    }

    /// The ports SRV records are made of: the service's for a cluster IP, the endpoints' (the
    /// ports the pods listen on) for a headless service, as CoreDNS does.
    pub fn srv_ports(&self) -> &[NamedPort] {
        match &self.service {
            Some(service) if service.cluster_ip.is_some() => &service.ports,
            Some(_) => &self.endpoint_ports,
            None => &[],
        }
    }

    fn is_empty(&self) -> bool {
        self.service.is_none() && self.endpoints.is_empty() && self.endpoint_ports.is_empty()
    }
}

/// The addresses an entry gives a PTR, each with whether it is an endpoint's.
fn ptr_addresses<'e>(settings: &'e Settings, entry: &'e Entry) -> impl Iterator<Item = (IpAddr, bool)> + 'e {
    let service = entry.service.as_ref();
    let cluster_ip = service.and_then(|s| s.cluster_ip).map(|ip| (ip, false));
    // Endpoints have names only while their service exists.
    let endpoints = entry.endpoints.ips().filter(move |_| service.is_some()).map(|ip| (ip, true));
    cluster_ip.into_iter().chain(endpoints).filter(|(ip, _)| settings.owns_reverse(*ip))
}

fn key(namespace: &str, name: &str) -> String {
    format!("{name}.{namespace}")
}

/// A boxed slice: collecting into a vector leaves room for four ports, for the one or two a
/// service has.
fn named(ports: &[Port]) -> Box<[NamedPort]> {
    ports
        .iter()
        .filter(|p| !p.name.is_empty())
        .map(|p| NamedPort { name: p.name.to_ascii_lowercase().into(), port: p.port, protocol: p.protocol })
        .collect()
}

impl Index {
    /// An empty index.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        Ok(Self {
            settings: Settings::new(config)?,
            entries: HashMap::new(),
            namespaces: HashMap::new(),
            reverse: Reverse::default(),
            ids: Ids::default(),
            serial: 1,
        })
    }

    /// Adds every record (a full listing), returning the ones it could not take.
    pub fn load(&mut self, services: &[Service], endpoints: &[Endpoints]) -> Vec<IndexError> {
        let from_services = services.iter().filter_map(|s| self.upsert_service(s).err());
        let mut errors: Vec<IndexError> = from_services.collect();
        errors.extend(endpoints.iter().filter_map(|e| self.set_endpoints(e).err()));
        errors
    }

    pub fn config(&self) -> &Config {
        &self.settings.config
    }

    /// The SOA serial: it changes with every update.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// How many services the index holds.
    pub fn services(&self) -> usize {
        self.namespaces.values().map(|n| *n as usize).sum()
    }

    /// Adds or replaces a service. A record that cannot be named (which the master does not
    /// store) removes the service and says why.
    pub fn upsert_service(&mut self, service: &Service) -> Result<(), IndexError> {
        let record = |source| IndexError::Record {
            kind: "service",
            record: format!("{}/{}", service.namespace, service.name),
            source: Box::new(source),
        };
        let checked =
            validate_label("namespace", &service.namespace).and_then(|()| validate_label("name", &service.name));
        if let Err(e) = checked {
            self.remove_service(&service.namespace, &service.name);
            return Err(record(e));
        }
        let data = ServiceData { cluster_ip: service.cluster_ip, ports: named(&service.ports) };
        let new = self.update(&service.namespace, &service.name, |entry| entry.service.replace(data).is_none());
        if new {
            *self.namespaces.entry(service.namespace.as_str().into()).or_default() += 1;
        }
        Ok(())
    }

    /// Removes a service (its endpoints are kept until their own record goes).
    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        if !self.entries.contains_key(key(namespace, name).as_str()) {
            return;
        }
        let existed = self.update(namespace, name, |entry| entry.service.take().is_some());
        if existed && let Some(count) = self.namespaces.get_mut(namespace) {
            *count -= 1;
            if *count == 0 {
                self.namespaces.remove(namespace);
            }
        }
    }

    /// Sets the endpoints of the service of the same namespace and name. A record with a name
    /// or hostname that is no DNS label removes the endpoints and says why.
    pub fn set_endpoints(&mut self, endpoints: &Endpoints) -> Result<(), IndexError> {
        let checked = validate_label("namespace", &endpoints.namespace)
            .and_then(|()| validate_label("name", &endpoints.name))
            .and_then(|()| {
                let mut hostnames = endpoints.addresses.iter().filter_map(|a| a.hostname.as_deref());
                hostnames.try_for_each(|h| validate_label("hostname", h))
            });
        if let Err(source) = checked {
            self.remove_endpoints(&endpoints.namespace, &endpoints.name);
            return Err(IndexError::Record {
                kind: "endpoints",
                record: format!("{}/{}", endpoints.namespace, endpoints.name),
                source: Box::new(source),
            });
        }
        let ready = endpoints.addresses.iter().filter(|a| a.ready).map(|a| (a.ip, a.hostname.as_deref()));
        let ready = Ready::new(ready);
        let ports = named(&endpoints.ports);
        self.update(&endpoints.namespace, &endpoints.name, |entry| {
            entry.endpoints = ready;
            entry.endpoint_ports = ports;
        });
        Ok(())
    }

    /// Removes the endpoints of a service.
    pub fn remove_endpoints(&mut self, namespace: &str, name: &str) {
        if self.entries.contains_key(key(namespace, name).as_str()) {
            self.update(namespace, name, |entry| {
                entry.endpoints = Ready::default();
                entry.endpoint_ports = Box::default();
            });
        }
    }

    /// Changes one entry: its PTRs are taken out before and put back after, since a change of
    /// cluster IP, endpoints or headlessness changes them.
    fn update<T>(&mut self, namespace: &str, name: &str, change: impl FnOnce(&mut Entry) -> T) -> T {
        let key = key(namespace, name);
        let (key, mut entry) = match self.entries.remove_entry(key.as_str()) {
            Some(found) => found,
            None => {
                let key = Arc::from(key);
                let id = self.ids.take(&key);
                (key, Entry { id, ..Entry::default() })
            }
        };
        self.unlink(&entry);
        let result = change(&mut entry);
        self.link(&entry);
        if entry.is_empty() {
            self.ids.release(entry.id);
        } else {
            self.entries.insert(key, entry);
        }
        self.serial = self.serial.checked_add(1).unwrap_or(1);
        result
    }

    fn link(&mut self, entry: &Entry) {
        for (ip, endpoint) in ptr_addresses(&self.settings, entry) {
            self.reverse.add(ip, PtrOwner { entry: entry.id, endpoint });
        }
    }

    fn unlink(&mut self, entry: &Entry) {
        for (ip, endpoint) in ptr_addresses(&self.settings, entry) {
            self.reverse.remove(ip, PtrOwner { entry: entry.id, endpoint });
        }
    }

    /// The entry of `<svc>.<ns>`.
    pub(crate) fn entry(&self, namespace: &str, service: &str) -> Option<(&Arc<str>, &Entry)> {
        self.entries.get_key_value(key(namespace, service).as_str())
    }

    /// The entries of `<svc>.<ns>`, where `*` as either label matches every one (the seed's
    /// wildcard lookups, as SkyDNS answered them), sorted by key.
    pub(crate) fn matching(&self, namespace: &str, service: &str) -> Vec<(&Arc<str>, &Entry)> {
        if namespace != WILDCARD && service != WILDCARD {
            return self.entry(namespace, service).into_iter().collect();
        }
        let matches = |label: &str, pattern: &str| pattern == WILDCARD || label == pattern;
        let mut found: Vec<(&Arc<str>, &Entry)> = self
            .entries
            .iter()
            .filter(|(key, _)| {
                key.split_once('.').is_some_and(|(svc, ns)| matches(svc, service) && matches(ns, namespace))
            })
            .collect();
        found.sort_unstable_by(|a, b| a.0.cmp(b.0));
        found
    }

    pub(crate) fn entry_by_key(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    pub(crate) fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// The keys of the entries that give `ip` a PTR, each with whether as an endpoint's address
    /// (rather than the cluster IP).
    pub(crate) fn ptr_owners(&self, ip: IpAddr) -> Vec<(&Arc<str>, bool)> {
        let owners = self.reverse.owners(ip).into_iter();
        owners.filter_map(|owner| Some((self.ids.key(owner.entry)?, owner.endpoint))).collect()
    }

    /// Whether any address from `first` to `last` has a PTR (so the reverse name above them
    /// exists).
    pub(crate) fn any_ptr_in(&self, first: IpAddr, last: IpAddr) -> bool {
        self.reverse.any_in(first, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{endpoints, service};

    fn index() -> Index {
        Index::new(Config::default()).expect("config")
    }

    /// By key.
    fn owners(index: &Index, ip: &str) -> Vec<(String, bool)> {
        let owners = index.ptr_owners(ip.parse().expect("ip"));
        let mut owners: Vec<(String, bool)> =
            owners.iter().map(|(key, endpoint)| (key.to_string(), *endpoint)).collect();
        owners.sort();
        owners
    }

    #[test]
    fn ptrs_follow_updates() {
        let mut index = index();
        index.upsert_service(&service("ns", "web", Some("172.30.0.10"))).expect("service");
        index
            .set_endpoints(&endpoints("ns", "web", &[("10.1.0.2", None, true), ("10.1.0.3", None, false)]))
            .expect("ep");
        assert_eq!(owners(&index, "172.30.0.10"), [("web.ns".to_string(), false)]);
        assert_eq!(owners(&index, "10.1.0.2"), [("web.ns".to_string(), true)]);
        assert!(owners(&index, "10.1.0.3").is_empty(), "not ready");

        index.upsert_service(&service("ns", "web", Some("172.30.0.11"))).expect("new IP");
        assert!(owners(&index, "172.30.0.10").is_empty());
        assert_eq!(owners(&index, "172.30.0.11").len(), 1);

        index.remove_service("ns", "web");
        assert!(owners(&index, "172.30.0.11").is_empty());
        assert!(owners(&index, "10.1.0.2").is_empty(), "no service, no names for its endpoints");
        assert!(!index.has_namespace("ns"));
        assert!(index.entry("ns", "web").is_some(), "the endpoints wait for their service");

        index.upsert_service(&service("ns", "web", None)).expect("headless");
        assert_eq!(owners(&index, "10.1.0.2").len(), 1);
        index.remove_endpoints("ns", "web");
        assert!(owners(&index, "10.1.0.2").is_empty());
        index.remove_service("ns", "web");
        assert!(index.entries.is_empty() && index.reverse.is_empty() && index.namespaces.is_empty());
    }

    #[test]
    fn an_address_of_two_services_has_two_owners_until_one_goes() {
        let mut index = index();
        for name in ["a", "b", "c"] {
            index.upsert_service(&service("ns", name, None)).expect("service");
            index.set_endpoints(&endpoints("ns", name, &[("10.1.0.2", None, true)])).expect("ep");
        }
        let all = [("a.ns".to_string(), true), ("b.ns".to_string(), true), ("c.ns".to_string(), true)];
        assert_eq!(owners(&index, "10.1.0.2"), all);
        index.remove_endpoints("ns", "b");
        assert_eq!(owners(&index, "10.1.0.2"), [all[0].clone(), all[2].clone()]);
        index.remove_service("ns", "a");
        assert_eq!(owners(&index, "10.1.0.2"), [all[2].clone()]);
        index.set_endpoints(&endpoints("ns", "b", &[("10.1.0.2", None, true)])).expect("ep");
        assert_eq!(owners(&index, "10.1.0.2"), [all[1].clone(), all[2].clone()]);
        index.remove_service("ns", "b");
        index.remove_service("ns", "c");
        assert!(index.reverse.is_empty());
    }

    #[test]
    fn namespaces_count_services() {
        let mut index = index();
        index.upsert_service(&service("ns", "a", None)).expect("a");
        index.upsert_service(&service("ns", "a", None)).expect("a again");
        index.upsert_service(&service("ns", "b", None)).expect("b");
        assert_eq!(index.services(), 2);
        index.remove_service("ns", "a");
        index.remove_service("ns", "a");
        assert!(index.has_namespace("ns"));
        index.remove_service("ns", "b");
        assert!(!index.has_namespace("ns"));
        assert_eq!(index.services(), 0);
    }

    #[test]
    fn bad_records_are_refused_and_remove_what_was_there() {
        let mut index = index();
        let serial = index.serial();
        let err = index.upsert_service(&service("ns", "Web", None)).expect_err("upper case");
        assert!(err.to_string().starts_with("service ns/Web: name: \"Web\""), "{err}");
        index.set_endpoints(&endpoints("ns", "web", &[("10.1.0.2", Some("db-0"), true)])).expect("ep");
        assert!(index.serial() > serial);
        let err = index.set_endpoints(&endpoints("ns", "web", &[("10.1.0.2", Some("db_0"), true)])).expect_err("host");
        assert!(err.to_string().starts_with("endpoints ns/web: hostname: \"db_0\""), "{err}");
        assert!(index.entry("ns", "web").is_none());
        let errors = index.load(&[service("ns", "ok", None), service("Ns", "x", None)], &[]);
        assert_eq!(errors.len(), 1);
        assert_eq!(index.services(), 1);
    }

    #[test]
    fn duplicate_and_outside_addresses() {
        let mut index = index();
        index.upsert_service(&service("ns", "web", None)).expect("service");
        let eps = endpoints(
            "ns",
            "web",
            &[("10.1.0.2", None, true), ("10.1.0.2", Some("a"), true), ("192.0.2.1", None, true)],
        );
        index.set_endpoints(&eps).expect("ep");
        let (_, entry) = index.entry("ns", "web").expect("entry");
        assert_eq!(entry.endpoints.iter().count(), 2, "one record per address");
        assert!(owners(&index, "192.0.2.1").is_empty(), "its reverse name is not ours");
    }
}
