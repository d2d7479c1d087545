//! End-to-end tests through `respond`, and the record builders the module tests share.

mod fuzz;
mod negative;
mod records;
mod updates;
mod wire;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, Record, RecordType};
use sdn_cluster::{EndpointAddress, Endpoints, Port, Protocol, Service};

use crate::{Config, Index, Outcome, Transport, respond};

pub(crate) const ID: u16 = 0x1234;
pub(crate) const UDP: Transport = Transport::Udp { max_size: crate::DEFAULT_UDP_MAX };

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
        ..Service::default()
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

/// The default config, also owning the reverse names of fd00:30::/64.
pub(crate) fn config() -> Config {
    let mut config = Config::default();
    config.reverse_networks.push("fd00:30::/64".parse().expect("v6 services"));
    config
}

/// A small cluster:
/// - `default/web`: cluster IP 172.30.0.10, port http; endpoints 10.1.0.5 (hostname web-0)
/// - `default/web6`: cluster IP fd00:30::10
/// - `default/plain`: cluster IP 172.30.0.11, one unnamed port
/// - `data/db`: headless, port mysql (endpoints' port 3306); endpoints 10.1.0.2 (db-0),
///   10.1.0.3 (no hostname), 10.1.0.4 (db-2, not ready)
/// - `data/empty`: headless without endpoints
pub(crate) fn cluster() -> Index {
    let mut index = Index::new(config()).expect("config");
    let mut plain = service("default", "plain", Some("172.30.0.11"));
    plain.ports = vec![port("", 8000, Protocol::Tcp)];
    let mut db = service("data", "db", None);
    db.ports = vec![port("mysql", 3306, Protocol::Tcp)];
    let mut db_endpoints = endpoints(
        "data",
        "db",
        &[("10.1.0.2", Some("db-0"), true), ("10.1.0.3", None, true), ("10.1.0.4", Some("db-2"), false)],
    );
    db_endpoints.ports = vec![port("mysql", 3306, Protocol::Tcp)];
    let services = [
        service("default", "web", Some("172.30.0.10")),
        service("default", "web6", Some("fd00:30::10")),
        plain,
        db,
        service("data", "empty", None),
    ];
    let errors =
        index.load(&services, &[endpoints("default", "web", &[("10.1.0.5", Some("web-0"), true)]), db_endpoints]);
    assert!(errors.is_empty(), "{errors:?}");
    index
}

/// A query for `name` with id `ID` and RD, with EDNS when `edns` is a payload size.
pub(crate) fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut message = Message::new(ID, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    if let Some(size) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(size);
        message.set_edns(opt);
    }
    message.to_vec().expect("query encodes")
}

/// The reply of `outcome`, parsed; it must be one.
pub(crate) fn reply(outcome: Outcome) -> Message {
    match outcome {
        Outcome::Reply(bytes) | Outcome::Refuse(bytes) => Message::from_vec(&bytes).expect("reply parses"),
        other => panic!("not a reply: {other:?}"),
    }
}

/// Asks over UDP without EDNS.
pub(crate) fn ask(index: &Index, name: &str, qtype: RecordType) -> Message {
    let message = reply(respond(index, &query(name, qtype, None), UDP));
    assert_eq!(message.metadata.id, ID);
    message
}

/// Records as "TYPE data" (owner left out), in order.
pub(crate) fn data(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| format!("{} {}", r.record_type(), r.data)).collect()
}
