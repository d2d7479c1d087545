//! The index follows the registry one record at a time.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::{ask, cluster, data, endpoints, service};

#[test]
fn answers_follow_incremental_updates() {
    let mut index = cluster();
    let name = "api.default.svc.cluster.local.";
    assert_eq!(ask(&index, name, RecordType::A).metadata.response_code, ResponseCode::NXDomain);
    let serial = index.serial();

    index.upsert_service(&service("default", "api", Some("172.30.0.20"))).expect("added");
    assert_eq!(data(&ask(&index, name, RecordType::A).answers), ["A 172.30.0.20"]);
    assert!(index.serial() > serial, "the SOA serial moves");

    index.upsert_service(&service("default", "api", Some("172.30.0.21"))).expect("new IP");
    assert_eq!(data(&ask(&index, name, RecordType::A).answers), ["A 172.30.0.21"]);
    assert_eq!(
        ask(&index, "20.0.30.172.in-addr.arpa.", RecordType::PTR).metadata.response_code,
        ResponseCode::NXDomain,
        "the old IP's PTR went with it"
    );

    // Turning headless: the name now lists the endpoints, which may have come first.
    index.set_endpoints(&endpoints("default", "api", &[("10.1.0.7", Some("api-0"), true)])).expect("endpoints");
    index.upsert_service(&service("default", "api", None)).expect("headless");
    assert_eq!(data(&ask(&index, name, RecordType::A).answers), ["A 10.1.0.7"]);
    let ptr = ask(&index, "7.0.1.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&ptr.answers), ["PTR api-0.api.default.svc.cluster.local."], "headless: the hostname");

    index.set_endpoints(&endpoints("default", "api", &[("10.1.0.7", Some("api-0"), false)])).expect("not ready");
    assert_eq!(ask(&index, name, RecordType::A).metadata.response_code, ResponseCode::NXDomain);

    index.set_endpoints(&endpoints("default", "api", &[("10.1.0.8", None, true)])).expect("endpoints");
    assert_eq!(data(&ask(&index, name, RecordType::A).answers), ["A 10.1.0.8"]);
    index.remove_endpoints("default", "api");
    assert_eq!(ask(&index, name, RecordType::A).metadata.response_code, ResponseCode::NXDomain);

    index.remove_service("default", "api");
    assert_eq!(
        ask(&index, "api.default.endpoints.cluster.local.", RecordType::A).metadata.response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(
        data(&ask(&index, "web.default.svc.cluster.local.", RecordType::A).answers),
        ["A 172.30.0.10"],
        "others stay"
    );
}

#[test]
fn a_namespace_exists_while_it_has_a_service() {
    let mut index = cluster();
    let ns = "team.svc.cluster.local.";
    assert_eq!(ask(&index, ns, RecordType::A).metadata.response_code, ResponseCode::NXDomain);
    index.upsert_service(&service("team", "x", Some("172.30.0.30"))).expect("added");
    assert_eq!(ask(&index, ns, RecordType::A).metadata.response_code, ResponseCode::NoError);
    assert_eq!(ask(&index, "team.cluster.local.", RecordType::A).metadata.response_code, ResponseCode::NoError);
    index.remove_service("team", "x");
    assert_eq!(ask(&index, ns, RecordType::A).metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn a_large_index_builds_and_updates() {
    let mut index = crate::Index::new(super::config()).expect("config");
    let services: Vec<_> = (0..10_000)
        .map(|i| {
            service(&format!("ns{}", i % 100), &format!("svc{i}"), Some(&format!("172.30.{}.{}", i / 250, i % 250 + 1)))
        })
        .collect();
    let eps: Vec<_> = (0..10_000)
        .map(|i| {
            let ips: Vec<String> =
                (0..5).map(|j| format!("10.1.{}.{}", (i * 5 + j) / 250, (i * 5 + j) % 250 + 1)).collect();
            let addresses: Vec<(&str, Option<&str>, bool)> = ips.iter().map(|ip| (ip.as_str(), None, true)).collect();
            endpoints(&format!("ns{}", i % 100), &format!("svc{i}"), &addresses)
        })
        .collect();
    assert!(index.load(&services, &eps).is_empty());
    assert_eq!(index.services(), 10_000);
    assert_eq!(data(&ask(&index, "svc9999.ns99.svc.cluster.local.", RecordType::A).answers), ["A 172.30.39.250"]);
    index.remove_service("ns99", "svc9999");
    assert_eq!(index.services(), 9_999);
    let ptr = ask(&index, "250.39.30.172.in-addr.arpa.", RecordType::PTR);
    assert_eq!(ptr.metadata.response_code, ResponseCode::NXDomain);
}
