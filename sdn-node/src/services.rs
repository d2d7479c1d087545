//! Which services the node's service maps hold, from the `services/` and `endpoints/` records
//! the cluster DNS serves too: a frontend for each port of each service with a cluster IP
//! (cluster IP, protocol, port), and its ready backends (pod IP, port). A service port maps to
//! the endpoints port of the same name and protocol, or to the single port of endpoints whose
//! service has one unnamed port, as Kubernetes Endpoints do. Pure, like `remotes.rs`: the shell
//! only writes maps.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnetwork::Ipv4Network;

use sdn_cluster::services::{Endpoints, Port, Protocol, Service};

/// Where clients connect: a cluster IP, a protocol and a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frontend {
    pub ip: Ipv4Addr,
    pub protocol: Protocol,
    pub port: u16,
}

/// Where a connection to a frontend goes: a ready endpoint's address and target port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Backend {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// A frontend's service port and its ready backends, sorted (so the same records always give
/// the same slots). Boxed rather than growable: the agent keeps one for every frontend of the
/// cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// `<namespace>/<name>`.
    pub service: Box<str>,
    /// The port's name; empty for a service's single unnamed port.
    pub port_name: Box<str>,
    pub backends: Box<[Backend]>,
    /// `ClientIP` session affinity: seconds a client stays on its backend.
    pub affinity: Option<u32>,
}

/// Every frontend of the cluster with its service port.
pub type Table = BTreeMap<Frontend, ServicePort>;

/// What the records ask for, and what they ask for that the programs cannot serve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub table: Table,
    /// `<namespace>/<name>:<port>` of ports left out: SCTP or an IPv6 cluster IP.
    pub unsupported: Vec<String>,
    /// `<namespace>/<name> <cluster IP>` of services whose cluster IP is outside the service
    /// network (written to etcd past the master's checks): the programs translate only
    /// destinations inside it, so such a frontend could never be reached.
    pub outside: Vec<String>,
    /// Frontends that more than one service asks for; the table has the last one's port.
    pub shared: Vec<Frontend>,
}

/// The frontends of `services` in the IPv4 service network `network` (`None`: an IPv6 one),
/// with the ready IPv4 backends of their `endpoints`. Headless services (no cluster IP) are the
/// DNS's alone.
pub fn wanted(services: &[Service], endpoints: &[Endpoints], network: Option<Ipv4Network>) -> Wanted {
    let by_name: BTreeMap<(&str, &str), &Endpoints> =
        endpoints.iter().map(|e| ((e.namespace.as_str(), e.name.as_str()), e)).collect();
    let mut wanted = Wanted::default();
    for service in services {
        let Some(cluster_ip) = service.cluster_ip else { continue };
        let name = format!("{}/{}", service.namespace, service.name);
        if let IpAddr::V4(ip) = cluster_ip
            && !network.is_some_and(|network| network.contains(ip))
        {
            wanted.outside.push(format!("{name} {ip}"));
            continue;
        }
        let endpoints = by_name.get(&(service.namespace.as_str(), service.name.as_str()));
        for port in &service.ports {
            let ip = match cluster_ip {
                IpAddr::V4(ip) if port.protocol != Protocol::Sctp => ip,
                _ => {
                    wanted.unsupported.push(format!("{name}:{}", port.port));
                    continue;
                }
            };
            let frontend = Frontend { ip, protocol: port.protocol, port: port.port };
            let backends = endpoints.map_or_else(Box::default, |e| backends(port, service.ports.len(), e));
            let affinity = service.affinity_timeout();
            let port =
                ServicePort { service: name.as_str().into(), port_name: port.name.as_str().into(), backends, affinity };
            if wanted.table.insert(frontend, port).is_some_and(|earlier| *earlier.service != *name) {
                wanted.shared.push(frontend);
            }
        }
    }
    wanted
}

/// The ready IPv4 backends of `endpoints` for the service port `port` (one of `port_count`).
fn backends(port: &Port, port_count: usize, endpoints: &Endpoints) -> Box<[Backend]> {
    let Some(target) = target_port(port, port_count, &endpoints.ports) else { return Box::default() };
    let mut backends: Vec<Backend> = endpoints
        .addresses
        .iter()
        .filter(|address| address.ready)
        .filter_map(|address| match address.ip {
            IpAddr::V4(ip) => Some(Backend { ip, port: target }),
            IpAddr::V6(_) => None,
        })
        .collect();
    backends.sort_unstable();
    backends.dedup();
    backends.into_boxed_slice()
}

/// The endpoints port a service port maps to: the one of the same name and protocol, or the
/// only one when the service has a single unnamed port.
fn target_port(port: &Port, port_count: usize, endpoint_ports: &[Port]) -> Option<u16> {
    let same = |p: &&Port| p.protocol == port.protocol;
    if let Some(named) = endpoint_ports.iter().filter(same).find(|p| p.name == port.name) {
        return Some(named.port);
    }
    match endpoint_ports {
        [only] if port.name.is_empty() && port_count == 1 && only.protocol == port.protocol => Some(only.port),
        _ => None,
    }
}

/// What to write to go from `current` to `wanted`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Frontends that are new or whose service port changed (backends, name).
    pub upsert: Vec<(Frontend, ServicePort)>,
    pub remove: Vec<Frontend>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.remove.is_empty()
    }
}

pub fn diff(current: &Table, wanted: &Table) -> Changes {
    let upsert = wanted
        .iter()
        .filter(|(frontend, port)| current.get(frontend) != Some(port))
        .map(|(frontend, port)| (*frontend, port.clone()))
        .collect();
    let remove = current.keys().filter(|frontend| !wanted.contains_key(frontend)).copied().collect();
    Changes { upsert, remove }
}

#[cfg(test)]
mod tests {
    use sdn_cluster::services::EndpointAddress;

    use super::*;

    const NET: Option<Ipv4Network> = Some(sdn_cluster::network::DEFAULT_SERVICE_NETWORK);

    fn port(name: &str, port: u16, protocol: Protocol) -> Port {
        Port { name: name.into(), port, protocol }
    }

    fn service(name: &str, ip: Option<&str>, ports: Vec<Port>) -> Service {
        Service {
            namespace: "shop".into(),
            name: name.into(),
            cluster_ip: ip.map(|ip| ip.parse().expect("ip")),
            ports,
            ..Service::default()
        }
    }

    fn endpoints(name: &str, addresses: &[(&str, bool)], ports: Vec<Port>) -> Endpoints {
        let addresses = addresses
            .iter()
            .map(|(ip, ready)| EndpointAddress {
                ip: ip.parse().expect("ip"),
                hostname: None,
                node_name: None,
                ready: *ready,
            })
            .collect();
        Endpoints { namespace: "shop".into(), name: name.into(), addresses, ports }
    }

    fn frontend(ip: &str, protocol: Protocol, port: u16) -> Frontend {
        Frontend { ip: ip.parse().expect("ip"), protocol, port }
    }

    fn backend(ip: &str, port: u16) -> Backend {
        Backend { ip: ip.parse().expect("ip"), port }
    }

    #[test]
    fn ports_map_by_name_and_protocol_to_ready_backends() {
        let services = [
            service(
                "web",
                Some("172.30.0.1"),
                vec![port("http", 80, Protocol::Tcp), port("dns", 53, Protocol::Udp), port("dns", 53, Protocol::Tcp)],
            ),
            service("db", None, vec![port("pg", 5432, Protocol::Tcp)]),
        ];
        let eps = [
            endpoints(
                "web",
                &[("10.1.1.2", true), ("10.1.0.2", true), ("10.1.0.9", false), ("10.1.0.2", true)],
                vec![port("http", 8080, Protocol::Tcp), port("dns", 5353, Protocol::Udp)],
            ),
            endpoints("db", &[("10.1.0.5", true)], vec![port("pg", 5432, Protocol::Tcp)]),
        ];
        let wanted = wanted(&services, &eps, NET);
        assert!(wanted.unsupported.is_empty());
        let http = &wanted.table[&frontend("172.30.0.1", Protocol::Tcp, 80)];
        assert_eq!(&*http.service, "shop/web");
        assert_eq!(*http.backends, [backend("10.1.0.2", 8080), backend("10.1.1.2", 8080)], "ready, sorted, once");
        let dns = &wanted.table[&frontend("172.30.0.1", Protocol::Udp, 53)];
        assert_eq!(*dns.backends, [backend("10.1.0.2", 5353), backend("10.1.1.2", 5353)]);
        // The endpoints have no TCP port named dns: the frontend exists and refuses.
        assert!(wanted.table[&frontend("172.30.0.1", Protocol::Tcp, 53)].backends.is_empty());
        assert_eq!(wanted.table.len(), 3, "the headless service has no frontend");
    }

    #[test]
    fn a_single_unnamed_port_takes_the_single_endpoints_port() {
        let services = [service("web", Some("172.30.0.1"), vec![port("", 80, Protocol::Tcp)])];
        let eps = [endpoints("web", &[("10.1.0.2", true)], vec![port("", 8080, Protocol::Tcp)])];
        assert_eq!(
            *wanted(&services, &eps, NET).table.values().next().expect("frontend").backends,
            [backend("10.1.0.2", 8080)]
        );
        let named = [endpoints("web", &[("10.1.0.2", true)], vec![port("metrics", 9090, Protocol::Tcp)])];
        assert_eq!(
            *wanted(&services, &named, NET).table.values().next().expect("frontend").backends,
            [backend("10.1.0.2", 9090)]
        );
        let two =
            [endpoints("web", &[("10.1.0.2", true)], vec![port("a", 1, Protocol::Tcp), port("b", 2, Protocol::Tcp)])];
        assert!(wanted(&services, &two, NET).table.values().next().expect("frontend").backends.is_empty(), "ambiguous");
        let udp = [endpoints("web", &[("10.1.0.2", true)], vec![port("", 8080, Protocol::Udp)])];
        assert!(wanted(&services, &udp, NET).table.values().next().expect("frontend").backends.is_empty(), "protocol");
    }

    #[test]
    fn services_without_endpoints_refuse_and_unsupported_ports_are_named() {
        let services = [
            service("idle", Some("172.30.0.2"), vec![port("http", 80, Protocol::Tcp)]),
            service("sctp", Some("172.30.0.3"), vec![port("s", 9, Protocol::Sctp)]),
            service("six", Some("fd00::1"), vec![port("http", 80, Protocol::Tcp)]),
        ];
        let wanted = wanted(&services, &[], NET);
        assert_eq!(wanted.table.len(), 1);
        assert!(wanted.table[&frontend("172.30.0.2", Protocol::Tcp, 80)].backends.is_empty());
        assert_eq!(wanted.unsupported, ["shop/sctp:9", "shop/six:80"]);
    }

    #[test]
    fn a_cluster_ip_outside_the_service_network_is_named_and_left_out() {
        let services = [
            service("web", Some("172.30.0.2"), vec![port("http", 80, Protocol::Tcp)]),
            service("stray", Some("10.96.0.1"), vec![port("http", 80, Protocol::Tcp)]),
        ];
        let wanted = wanted(&services, &[], NET);
        assert_eq!(wanted.table.keys().copied().collect::<Vec<_>>(), [frontend("172.30.0.2", Protocol::Tcp, 80)]);
        assert_eq!(wanted.outside, ["shop/stray 10.96.0.1"]);
        // An IPv6 service network has no room for IPv4 cluster IPs.
        let six = super::wanted(&services, &[], None);
        assert!(six.table.is_empty());
        assert_eq!(six.outside, ["shop/web 172.30.0.2", "shop/stray 10.96.0.1"]);
    }

    #[test]
    fn a_frontend_two_services_ask_for_is_the_later_ones() {
        let ports = || vec![port("http", 80, Protocol::Tcp), port("http", 80, Protocol::Tcp)];
        let services = [service("a", Some("172.30.0.1"), ports()), service("b", Some("172.30.0.1"), ports())];
        let wanted = wanted(&services, &[], NET);
        assert_eq!(wanted.table[&frontend("172.30.0.1", Protocol::Tcp, 80)].service, "shop/b".into());
        assert_eq!(
            wanted.shared,
            [frontend("172.30.0.1", Protocol::Tcp, 80)],
            "a service's own port twice is not shared"
        );
        assert!(super::wanted(&services[..1], &[], NET).shared.is_empty());
    }

    #[test]
    fn client_ip_affinity_carries_its_timeout() {
        use sdn_cluster::services::{ClientIpConfig, SessionAffinity, SessionAffinityConfig};
        let mut sticky = service("web", Some("172.30.0.1"), vec![port("http", 80, Protocol::Tcp)]);
        sticky.session_affinity = SessionAffinity::ClientIp;
        let affinity =
            |s: &Service| wanted(std::slice::from_ref(s), &[], NET).table.values().next().expect("port").affinity;
        assert_eq!(affinity(&sticky), Some(10800), "Kubernetes' default");
        sticky.session_affinity_config =
            Some(SessionAffinityConfig { client_ip: Some(ClientIpConfig { timeout_seconds: Some(60) }) });
        assert_eq!(affinity(&sticky), Some(60));
        assert_eq!(affinity(&service("web", Some("172.30.0.1"), vec![port("http", 80, Protocol::Tcp)])), None);
    }

    #[test]
    fn the_diff_writes_what_changed_and_removes_what_went() {
        let services = [service("web", Some("172.30.0.1"), vec![port("http", 80, Protocol::Tcp)])];
        let before =
            wanted(&services, &[endpoints("web", &[("10.1.0.2", true)], vec![port("http", 80, Protocol::Tcp)])], NET);
        assert_eq!(diff(&before.table, &before.table), Changes::default());
        let after = wanted(
            &services,
            &[endpoints("web", &[("10.1.0.2", true), ("10.1.0.3", true)], vec![port("http", 80, Protocol::Tcp)])],
            NET,
        );
        let changes = diff(&before.table, &after.table);
        assert_eq!(changes.upsert.len(), 1);
        assert_eq!(changes.upsert[0].1.backends.len(), 2);
        assert!(changes.remove.is_empty());
        let gone = diff(&after.table, &Table::new());
        assert_eq!(gone.remove, [frontend("172.30.0.1", Protocol::Tcp, 80)]);
        assert!(gone.upsert.is_empty() && !gone.is_empty());
    }
}
