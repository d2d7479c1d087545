//! From a question to the records that answer it, or to the decision that it is not ours.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::op::Query;
use hickory_proto::rr::rdata::{A, AAAA, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::config::SCHEMA_VERSION;
use crate::index::{EndpointLabel, Entry, Index};
use crate::names::{Relative, absolute, parse_dashed, relative};
use crate::reverse::{self, Place, Reverse};

/// SOA timers: nothing transfers this zone, so they only need to be sane (CoreDNS's values).
const SOA_REFRESH: i32 = 7200;
const SOA_RETRY: i32 = 1800;
const SOA_EXPIRE: i32 = 86400;

/// What to do with a question.
#[derive(Debug)]
pub(crate) enum Decision {
    Answer(Answer),
    /// Not ours: the shell forwards it upstream or refuses it.
    Forward,
    /// Ours to refuse (zone transfers).
    Refuse,
}

/// An authoritative answer, before it is put on the wire.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub nxdomain: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

/// What a name holds.
enum Node {
    /// A zone apex: its SOA.
    Apex,
    /// `dns-version.<zone>`.
    Version,
    /// An empty non-terminal: a name with names below it and no records.
    Empty,
    Addresses(Vec<IpAddr>),
    Srv(Vec<SrvTarget>),
    Ptr(Vec<Name>),
}

struct SrvTarget {
    port: u16,
    target: Name,
    addresses: Vec<IpAddr>,
}

pub(crate) fn decide(index: &Index, query: &Query) -> Decision {
    if matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR) {
        return Decision::Refuse;
    }
    let settings = &index.settings;
    let name = query.name();
    let (apex, node) = match relative(name, &settings.zone) {
        Relative::Labels(labels) => (&settings.zone, forward_node(index, &labels)),
        Relative::Impossible => (&settings.zone, None),
        Relative::Outside => match reverse::classify(name, &settings.reverse) {
            Reverse::Ours { apex, place } => (apex, reverse_node(index, place)),
            Reverse::Foreign | Reverse::Elsewhere => return Decision::Forward,
        },
    };
    Decision::Answer(records(index, apex, query, node))
}

/// The node of a name in the cluster zone, from its labels left of the zone; `None` when it
/// does not exist.
fn forward_node(index: &Index, labels: &[String]) -> Option<Node> {
    let top_down: Vec<&str> = labels.iter().rev().map(String::as_str).collect();
    match top_down.as_slice() {
        [] => Some(Node::Apex),
        ["dns-version"] => Some(Node::Version),
        ["svc" | "endpoints"] => Some(Node::Empty),
        // `<ns>.<zone>` is a search domain of the pods of the namespace.
        [ns] | ["svc" | "endpoints", ns] => index.has_namespace(ns).then_some(Node::Empty),
        ["svc", ns, svc] => {
            let visible = index.matching(ns, svc).into_iter().filter(|(_, entry)| entry.visible());
            addresses(visible.flat_map(|(_, entry)| service_addresses(entry)))
        }
        ["svc", ns, svc, below] => below_service(index, ns, svc, below),
        ["svc", ns, svc, proto, port] => {
            let mut targets = index
                .matching(ns, svc)
                .into_iter()
                .filter_map(|(key, entry)| srv_targets(index, key, entry, proto, port));
            let first = targets.next()?;
            Some(Node::Srv(first.into_iter().chain(targets.flatten()).collect()))
        }
        ["endpoints", ns, svc] => {
            let ready = index.matching(ns, svc).into_iter().filter(|(_, entry)| entry.service.is_some());
            addresses(ready.flat_map(|(_, entry)| entry.endpoints.ips()))
        }
        _ => None,
    }
}

/// The addresses, each once, if there are any (a wildcard may match several services).
fn addresses(ips: impl Iterator<Item = IpAddr>) -> Option<Node> {
    let mut seen = std::collections::HashSet::new();
    let ips: Vec<IpAddr> = ips.filter(|ip| seen.insert(*ip)).collect();
    (!ips.is_empty()).then_some(Node::Addresses(ips))
}

fn service_addresses(entry: &Entry) -> Vec<IpAddr> {
    match entry.service.as_ref().and_then(|s| s.cluster_ip) {
        Some(ip) => vec![ip],
        None => entry.endpoints.ips().collect(),
    }
}

/// `<label>.<svc>.<ns>.svc.<zone>`: an endpoint, or `_<proto>` above SRV names.
fn below_service(index: &Index, ns: &str, svc: &str, label: &str) -> Option<Node> {
    let (_, entry) = index.entry(ns, svc)?;
    if !entry.visible() {
        return None;
    }
    if let Some(proto) = label.strip_prefix('_') {
        let any = entry.srv_ports().iter().any(|p| p.protocol.srv_label() == proto);
        return any.then_some(Node::Empty);
    }
    let addresses = parse_dashed(label);
    let ips: Vec<IpAddr> = entry
        .endpoints
        .iter()
        .filter(|ep| match entry.label_of(*ep) {
            EndpointLabel::Hostname(hostname) => hostname == label,
            EndpointLabel::Dashed(ip) => addresses.contains(&ip),
        })
        .map(|ep| ep.ip)
        .collect();
    (!ips.is_empty()).then_some(Node::Addresses(ips))
}

/// The SRV targets of `_<port>._<proto>.<svc>.<ns>.svc.<zone>` for the service `key`.
fn srv_targets(index: &Index, key: &str, entry: &Entry, proto: &str, port: &str) -> Option<Vec<SrvTarget>> {
    if !entry.visible() {
        return None;
    }
    let (proto, port_name) = (proto.strip_prefix('_')?, port.strip_prefix('_')?);
    let port = entry.srv_ports().iter().find(|p| p.protocol.srv_label() == proto && &*p.name == port_name)?;
    let zone = &index.settings.zone;
    let mut targets: Vec<SrvTarget> = Vec::new();
    if let Some(ip) = entry.service.as_ref().and_then(|s| s.cluster_ip) {
        targets.extend(service_name(key, zone).map(|target| SrvTarget {
            port: port.port,
            target,
            addresses: vec![ip],
        }));
    } else {
        // Endpoints sharing a hostname share a target (whose A records list them all).
        let mut by_label: HashMap<String, usize> = HashMap::new();
        for endpoint in entry.endpoints.iter() {
            let label = entry.label_of(endpoint).text();
            if let Some(&i) = by_label.get(&label) {
                targets[i].addresses.push(endpoint.ip);
            } else if let Some(target) = endpoint_name(&label, key, zone) {
                by_label.insert(label, targets.len());
                targets.push(SrvTarget { port: port.port, target, addresses: vec![endpoint.ip] });
            }
        }
    }
    Some(targets)
}

fn reverse_node(index: &Index, place: Place) -> Option<Node> {
    match place {
        Place::Address(ip) => {
            let owners = index.ptr_owners(ip).into_iter();
            let names: Vec<Name> = owners.filter_map(|(key, endpoint)| ptr_target(index, key, endpoint, ip)).collect();
            (!names.is_empty()).then_some(Node::Ptr(names))
        }
        Place::Range { apex: true, .. } => Some(Node::Apex),
        Place::Range { first, last, apex: false } => index.any_ptr_in(first, last).then_some(Node::Empty),
        Place::Invalid => None,
    }
}

/// The name `ip` has as an endpoint of the service `key`, or as its cluster IP.
fn ptr_target(index: &Index, key: &str, endpoint: bool, ip: IpAddr) -> Option<Name> {
    let entry = index.entry_by_key(key)?;
    let zone = &index.settings.zone;
    if endpoint {
        let endpoint = entry.endpoints.find(ip)?;
        endpoint_name(&entry.label_of(endpoint).text(), key, zone)
    } else {
        service_name(key, zone)
    }
}

/// `<svc>.<ns>.svc.<zone>` from the key `<svc>.<ns>`.
fn service_name(key: &str, zone: &Name) -> Option<Name> {
    absolute(key.split('.').chain(["svc"]), zone)
}

fn endpoint_name(label: &str, key: &str, zone: &Name) -> Option<Name> {
    absolute([label].into_iter().chain(key.split('.')).chain(["svc"]), zone)
}

/// The records of `node` the question asks for; NXDOMAIN or NODATA (with the SOA of `apex`)
/// when there are none.
fn records(index: &Index, apex: &Name, query: &Query, node: Option<Node>) -> Answer {
    let Some(node) = node else { return negative(index, apex, true) };
    let (owner, qtype, ttl) = (query.name(), query.query_type(), index.settings.config.ttl);
    let wants = |t: RecordType| qtype == t || qtype == RecordType::ANY;
    let mut answer = Answer::default();
    let record = |data: RData| Record::from_rdata(owner.clone(), ttl, data);
    match node {
        Node::Apex if wants(RecordType::SOA) => answer.answers.push(soa(index, apex)),
        Node::Version if wants(RecordType::TXT) => {
            answer.answers.push(record(RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()]))));
        }
        Node::Addresses(ips) => {
            answer.answers.extend(ips.into_iter().filter_map(|ip| address(owner, ttl, ip, &wants)));
        }
        Node::Srv(targets) if wants(RecordType::SRV) => {
            // CoreDNS's weights: 100 shared among the records of one priority.
            let weight = u16::try_from(100 / targets.len().max(1)).unwrap_or(1).max(1);
            for target in targets {
                answer.answers.push(record(RData::SRV(SRV::new(0, weight, target.port, target.target.clone()))));
                let glue = target.addresses.into_iter().filter_map(|ip| address(&target.target, ttl, ip, &|_| true));
                answer.additional.extend(glue);
            }
        }
        Node::Ptr(names) if wants(RecordType::PTR) => {
            answer.answers.extend(names.into_iter().map(|name| record(RData::PTR(PTR(name)))));
        }
        _ => {}
    }
    if answer.answers.is_empty() { negative(index, apex, false) } else { answer }
}

/// An A or AAAA record for `ip`, if that type is wanted.
fn address(owner: &Name, ttl: u32, ip: IpAddr, wants: &dyn Fn(RecordType) -> bool) -> Option<Record> {
    let data = match ip {
        IpAddr::V4(v4) if wants(RecordType::A) => RData::A(A(v4)),
        IpAddr::V6(v6) if wants(RecordType::AAAA) => RData::AAAA(AAAA(v6)),
        _ => return None,
    };
    Some(Record::from_rdata(owner.clone(), ttl, data))
}

fn negative(index: &Index, apex: &Name, nxdomain: bool) -> Answer {
    Answer { nxdomain, authority: vec![soa(index, apex)], ..Answer::default() }
}

/// The SOA of `apex`; its TTL and minimum are the negative TTL (RFC 2308 §5).
fn soa(index: &Index, apex: &Name) -> Record {
    let settings = &index.settings;
    let negative_ttl = settings.config.negative_ttl;
    let data = SOA::new(
        settings.mname.clone(),
        settings.rname.clone(),
        index.serial(),
        SOA_REFRESH,
        SOA_RETRY,
        SOA_EXPIRE,
        negative_ttl,
    );
    Record::from_rdata(apex.clone(), negative_ttl, RData::SOA(data))
}
