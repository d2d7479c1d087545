//! Record builders the module tests share.

use sdn_cluster::{EndpointAddress, Endpoints, Port, Protocol, Service};

pub(crate) fn ip(text: &str) -> std::net::IpAddr {
    text.parse().expect("ip")
}

pub(crate) fn port(name: &str, number: u16, protocol: Protocol) -> Port {
    Port { name: name.into(), port: number, protocol }
}

/// A service with one TCP port `http` 80.
pub(crate) fn service(namespace: &str, name: &str, cluster_ip: Option<&str>) -> Service {
    Service {
        namespace: namespace.into(),
        name: name.into(),
        cluster_ip: cluster_ip.map(|ip| ip.parse().expect("cluster IP")),
        ports: vec![port("http", 80, Protocol::Tcp)],
    }
}

/// Endpoints from (address, hostname, ready), with one TCP port `http` 8080.
pub(crate) fn endpoints(namespace: &str, name: &str, addresses: &[(&str, Option<&str>, bool)]) -> Endpoints {
    Endpoints {
        namespace: namespace.into(),
        name: name.into(),
        addresses: addresses
            .iter()
            .map(|(ip, hostname, ready)| EndpointAddress {
                ip: ip.parse().expect("endpoint IP"),
                hostname: hostname.map(Into::into),
                node_name: None,
                ready: *ready,
            })
            .collect(),
        ports: vec![port("http", 8080, Protocol::Tcp)],
    }
}
