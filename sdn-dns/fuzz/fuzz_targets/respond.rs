//! Arbitrary bytes through `respond` and `refuse`, over UDP and TCP: no panic, and every reply
//! keeps the query's id and fits the transport.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sdn_cluster::{EndpointAddress, Endpoints, Port, Protocol, Service};
use sdn_dns::{Config, Index, Outcome, Transport};

/// A cluster with each kind of name: a cluster IP service, an IPv6 one, a headless one with
/// named and unnamed endpoints (one not ready).
static INDEX: LazyLock<Index> = LazyLock::new(|| {
    let mut config = Config::default();
    config.reverse_networks.push("fd00:30::/64".parse().expect("network"));
    let mut index = Index::new(config).expect("config");
    let port = |name: &str, port| Port { name: name.into(), port, protocol: Protocol::Tcp };
    let service = |name: &str, ip: Option<&str>| Service {
        namespace: "default".into(),
        name: name.into(),
        cluster_ip: ip.map(|ip| ip.parse().expect("ip")),
        ports: vec![port("http", 80)],
        ..Service::default()
    };
    let address = |ip: &str, hostname: Option<&str>, ready| EndpointAddress {
        ip: ip.parse().expect("ip"),
        hostname: hostname.map(Into::into),
        node_name: None,
        ready,
    };
    let endpoints = |name: &str, addresses| Endpoints {
        namespace: "default".into(),
        name: name.into(),
        addresses,
        ports: vec![port("http", 8080)],
    };
    let services = [service("web", Some("172.30.0.10")), service("web6", Some("fd00:30::10")), service("db", None)];
    let db = vec![
        address("10.1.0.2", Some("db-0"), true),
        address("10.1.0.3", None, true),
        address("10.1.0.4", Some("db-2"), false),
    ];
    let web = vec![address("10.1.0.5", None, true)];
    let errors = index.load(&services, &[endpoints("db", db), endpoints("web", web)]);
    assert!(errors.is_empty(), "{errors:?}");
    index
});

fuzz_target!(|data: &[u8]| {
    for (transport, limit) in [(Transport::Udp { max_size: 1232 }, 1232), (Transport::Tcp, sdn_dns::TCP_MAX)] {
        for outcome in [sdn_dns::respond(&INDEX, data, transport), sdn_dns::refuse(data, transport)] {
            match outcome {
                Outcome::Reply(bytes) | Outcome::Refuse(bytes) => {
                    assert!(bytes.len() <= limit, "{} bytes over {limit}", bytes.len());
                    assert_eq!(bytes.get(..2), data.get(..2), "id not echoed");
                }
                Outcome::Forward(request) => assert!(request.reply_limit <= limit),
                Outcome::Drop => {}
            }
        }
    }
});
